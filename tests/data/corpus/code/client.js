const api = axios.create({ baseURL: 'https://api.internal',
  headers: { Authorization: 'Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJzdmMtYmF0Y2giLCJyb2xlIjoiYWRtaW4ifQ.zxOCFen6jO8FDJee8cwh9rSROgoPmkYHTcmjQJZ5xx8' } });
