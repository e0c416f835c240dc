GITHUB_TOKEN = 'ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'
FAKE = 'ghp_phBtgIiazVV0fZevaweTHOptwZ40CMZQtyjS'
def test_token_is_masked():
    assert mask(GITHUB_TOKEN).startswith('ghp_')
