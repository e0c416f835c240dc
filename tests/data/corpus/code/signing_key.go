package sign

const pkcs8 = `-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEINq9RZmy3M7xqQOkDxeIT+ZYYXhgK4SzdzpS0FGVq1r6
-----END PRIVATE KEY-----
`
