session = boto3.Session(
    aws_access_key_id='ASIAIGN32BPFQJMZAWO3',
    aws_secret_access_key='NQlUqvI8rRfrAoobnj2NKYhvmTyh69+3/x9jFrPw',
    aws_session_token='00bflIIsu56vCNf757RkmJXQr_3N0aDbFjC595dRymI2Bh_vfG24kqOoc5aCVCp6ljACyciZbh1uxPITU-GkMq0eVHtJ5OBdwUhmb8HiulrsV60-eFliqbNo')
