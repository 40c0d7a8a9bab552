package admin

import _ "embed"

// openAPIDoc is the hand-written OpenAPI 3.1 description of the API,
// served at GET /v1/openapi.json. A test checks that it lists exactly the
// routes the server serves.
//
//go:embed openapi.json
var openAPIDoc []byte
