package admin

import (
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"

	"moat/internal/registry"
)

// apiRoutes are all the endpoints; the OpenAPI document lists the same.
var apiRoutes = []route{
	{"GET", "/v1/openapi.json", "openapi.get", (*Server).getOpenAPI},
	{"GET", "/v1/devices", "device.list", (*Server).listDevices},
	{"POST", "/v1/devices", "device.create", (*Server).createDevice},
	{"GET", "/v1/devices/{id}", "device.get", (*Server).getDevice},
	{"PATCH", "/v1/devices/{id}", "device.update", (*Server).updateDevice},
	{"DELETE", "/v1/devices/{id}", "device.delete", (*Server).deleteDevice},
	{"POST", "/v1/devices/{id}/disable", "device.disable", (*Server).disableDevice},
	{"POST", "/v1/devices/{id}/enable", "device.enable", (*Server).enableDevice},
	{"POST", "/v1/devices/{id}/credentials", "credential.create", (*Server).createCredential},
	{"DELETE", "/v1/devices/{id}/credentials/{cid}", "credential.delete", (*Server).deleteCredential},
	{"POST", "/v1/devices/{id}/credentials/{cid}/rotate", "credential.rotate", (*Server).rotateCredential},
	{"GET", "/v1/clients", "client.list", (*Server).listClients},
	{"GET", "/v1/alarms", "alarm.list", (*Server).listAlarms},
	{"POST", "/v1/clients/{id}/disconnect", "client.disconnect", (*Server).disconnectClient},
	{"GET", "/v1/ecdh/public-key", "ecdh.public-key", (*Server).ecdhPublicKey},
	{"POST", "/v1/fleet/key", "fleet.set-key", (*Server).setFleetKey},
	{"POST", "/v1/fleet/derive", "fleet.derive", (*Server).deriveFleetPSK},
}

// decode reads a JSON request body into v: application/json (or no
// content type), at most maxBody bytes, no unknown fields, one value.
// Error messages never quote the body.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return errStatus(http.StatusUnsupportedMediaType, "content type must be application/json")
		}
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, s.maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return bodyError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err != nil {
			return bodyError(err)
		}
		return errStatus(http.StatusBadRequest, "request body holds more than one JSON value")
	}
	return nil
}

func bodyError(err error) error {
	var mbe *http.MaxBytesError
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &mbe):
		return errStatus(http.StatusRequestEntityTooLarge, "request body larger than %d bytes", mbe.Limit)
	case errors.Is(err, io.EOF):
		return errStatus(http.StatusBadRequest, "request body required")
	case errors.As(err, &se):
		return errStatus(http.StatusBadRequest, "invalid JSON at offset %d", se.Offset)
	case errors.As(err, &te):
		return errStatus(http.StatusBadRequest, "field %q: wrong type (want %s)", te.Field, te.Type)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errStatus(http.StatusBadRequest, "truncated JSON")
	}
	// Unknown fields: "json: unknown field \"x\"" names only the field.
	return errStatus(http.StatusBadRequest, "invalid request body: %v", err)
}

// noBody accepts an empty body or an empty JSON object.
func (s *Server) noBody(w http.ResponseWriter, r *http.Request) error {
	if r.ContentLength == 0 {
		return nil
	}
	err := s.decode(w, r, &struct{}{})
	var ae *apiError
	if errors.As(err, &ae) && ae.msg == "request body required" {
		return nil
	}
	return err
}

// credentialRequest is a credential in a request body.
type credentialRequest struct {
	Kind         string `json:"kind"`
	Fingerprint  string `json:"fingerprint,omitempty"`
	Issuer       string `json:"issuer,omitempty"`
	Serial       string `json:"serial,omitempty"`
	Subject      string `json:"subject,omitempty"`
	Certificate  string `json:"certificate,omitempty"` // PEM
	Identity     string `json:"identity,omitempty"`
	Key          string `json:"key,omitempty"` // hex
	Derived      bool   `json:"derived,omitempty"`
	SPKISHA256   string `json:"spki_sha256,omitempty"`
	PublicKey    string `json:"public_key,omitempty"`
	Password     string `json:"password,omitempty"`
	PasswordHash string `json:"password_hash,omitempty"`
}

func (c *credentialRequest) toNew() (registry.NewCredential, error) {
	nc := registry.NewCredential{
		Kind: registry.Kind(c.Kind), Fingerprint: c.Fingerprint, Issuer: c.Issuer, Serial: c.Serial,
		Subject: c.Subject, Identity: c.Identity, Derived: c.Derived, SPKISHA256: c.SPKISHA256,
		PublicKey: c.PublicKey, PasswordHash: c.PasswordHash,
	}
	if c.Certificate != "" {
		block, _ := pem.Decode([]byte(c.Certificate))
		if block == nil || block.Type != "CERTIFICATE" {
			return nc, errStatus(http.StatusBadRequest, "certificate: want a PEM CERTIFICATE block")
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nc, errStatus(http.StatusBadRequest, "certificate: %v", err)
		}
		nc.Certificate = cert
	}
	if c.Key != "" {
		k, err := hex.DecodeString(c.Key)
		if err != nil {
			return nc, errStatus(http.StatusBadRequest, "key: must be hex") // never echo the key
		}
		nc.Key = k
	}
	if c.Password != "" {
		nc.Password = []byte(c.Password)
	}
	return nc, nil
}

// secretJSON is a secret shown once.
type secretJSON struct {
	CredentialID string `json:"credential_id"`
	Kind         string `json:"kind"`
	Identity     string `json:"identity,omitempty"`
	Key          string `json:"key,omitempty"`      // psk, hex
	Password     string `json:"password,omitempty"` // password
}

func secretOf(is registry.Issued) secretJSON {
	s := secretJSON{CredentialID: is.CredentialID, Kind: string(is.Kind), Identity: is.Identity}
	if is.Kind == registry.KindPassword {
		s.Password = string(is.Secret)
	} else {
		s.Key = hex.EncodeToString(is.Secret)
	}
	return s
}

type deviceRequest struct {
	ID          string              `json:"id"`
	Status      string              `json:"status,omitempty"`
	Metadata    map[string]string   `json:"metadata,omitempty"`
	ACL         []registry.Rule     `json:"acl,omitempty"`
	Credentials []credentialRequest `json:"credentials,omitempty"`
}

type createdDevice struct {
	Device  *registry.Device `json:"device"`
	Secrets []secretJSON     `json:"secrets,omitempty"`
}

func (s *Server) getOpenAPI(w http.ResponseWriter, r *http.Request) (int, any, error) {
	return http.StatusOK, rawJSON(openAPIDoc), nil
}

func (s *Server) listDevices(w http.ResponseWriter, r *http.Request) (int, any, error) {
	return http.StatusOK, map[string]any{"devices": s.reg.List()}, nil
}

func (s *Server) createDevice(w http.ResponseWriter, r *http.Request) (int, any, error) {
	var req deviceRequest
	if err := s.decode(w, r, &req); err != nil {
		return 0, nil, err
	}
	nd := registry.NewDevice{ID: req.ID, Metadata: req.Metadata, ACL: req.ACL}
	switch registry.Status(req.Status) {
	case "", registry.StatusEnabled:
	case registry.StatusDisabled:
		nd.Disabled = true
	default:
		return 0, nil, errStatus(http.StatusBadRequest, "status must be enabled or disabled")
	}
	for i := range req.Credentials {
		nc, err := req.Credentials[i].toNew()
		if err != nil {
			return 0, nil, fmt.Errorf("credential %d: %w", i, err)
		}
		nd.Credentials = append(nd.Credentials, nc)
	}
	setTarget(r, "device:"+req.ID)
	d, issued, err := s.reg.Add(nd)
	if err != nil {
		return 0, nil, err
	}
	out := createdDevice{Device: d}
	for _, is := range issued {
		out.Secrets = append(out.Secrets, secretOf(is))
	}
	return http.StatusCreated, out, nil
}

func (s *Server) device(r *http.Request) (*registry.Device, error) {
	id := r.PathValue("id")
	d, ok := s.reg.Device(id)
	if !ok {
		return nil, errStatus(http.StatusNotFound, "device %q not found", id)
	}
	return d, nil
}

func (s *Server) getDevice(w http.ResponseWriter, r *http.Request) (int, any, error) {
	d, err := s.device(r)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, d, nil
}

type patchRequest struct {
	Metadata *map[string]string `json:"metadata"`
	ACL      *[]registry.Rule   `json:"acl"`
}

func (s *Server) updateDevice(w http.ResponseWriter, r *http.Request) (int, any, error) {
	var req patchRequest
	if err := s.decode(w, r, &req); err != nil {
		return 0, nil, err
	}
	if req.Metadata == nil && req.ACL == nil {
		return 0, nil, errStatus(http.StatusBadRequest, "nothing to change (give metadata and/or acl)")
	}
	d, err := s.reg.Update(r.PathValue("id"), registry.DeviceUpdate{Metadata: req.Metadata, ACL: req.ACL})
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, d, nil
}

func (s *Server) deleteDevice(w http.ResponseWriter, r *http.Request) (int, any, error) {
	if err := s.reg.Remove(r.PathValue("id")); err != nil {
		return 0, nil, err
	}
	return http.StatusNoContent, nil, nil
}

func (s *Server) setStatus(w http.ResponseWriter, r *http.Request, st registry.Status) (int, any, error) {
	if err := s.noBody(w, r); err != nil {
		return 0, nil, err
	}
	d, err := s.reg.SetStatus(r.PathValue("id"), st)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, d, nil
}

func (s *Server) disableDevice(w http.ResponseWriter, r *http.Request) (int, any, error) {
	return s.setStatus(w, r, registry.StatusDisabled)
}

func (s *Server) enableDevice(w http.ResponseWriter, r *http.Request) (int, any, error) {
	return s.setStatus(w, r, registry.StatusEnabled)
}

type createdCredential struct {
	Credential *registry.Credential `json:"credential"`
	Secret     *secretJSON          `json:"secret,omitempty"`
}

func (s *Server) createCredential(w http.ResponseWriter, r *http.Request) (int, any, error) {
	var req credentialRequest
	if err := s.decode(w, r, &req); err != nil {
		return 0, nil, err
	}
	nc, err := req.toNew()
	if err != nil {
		return 0, nil, err
	}
	c, is, err := s.reg.AddCredential(r.PathValue("id"), nc)
	if err != nil {
		return 0, nil, err
	}
	out := createdCredential{Credential: c}
	if is != nil {
		sj := secretOf(*is)
		out.Secret = &sj
	}
	return http.StatusCreated, out, nil
}

func (s *Server) deleteCredential(w http.ResponseWriter, r *http.Request) (int, any, error) {
	if err := s.reg.RemoveCredential(r.PathValue("id"), r.PathValue("cid")); err != nil {
		return 0, nil, err
	}
	return http.StatusNoContent, nil, nil
}

func (s *Server) rotateCredential(w http.ResponseWriter, r *http.Request) (int, any, error) {
	if err := s.noBody(w, r); err != nil {
		return 0, nil, err
	}
	id, cid := r.PathValue("id"), r.PathValue("cid")
	d, err := s.device(r)
	if err != nil {
		return 0, nil, err
	}
	var cred *registry.Credential
	for i := range d.Credentials {
		if d.Credentials[i].ID == cid {
			cred = &d.Credentials[i]
		}
	}
	if cred == nil {
		return 0, nil, errStatus(http.StatusNotFound, "device %q has no credential %q", id, cid)
	}
	secret, err := s.reg.RotateCredential(id, cid)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, secretOf(registry.Issued{CredentialID: cid, Kind: cred.Kind, Identity: cred.Identity, Secret: secret}), nil
}

func (s *Server) listClients(w http.ResponseWriter, r *http.Request) (int, any, error) {
	if s.clients == nil {
		return 0, nil, errStatus(http.StatusServiceUnavailable, "no broker attached")
	}
	cs := s.clients.Clients()
	if cs == nil {
		cs = []ClientInfo{}
	}
	return http.StatusOK, map[string]any{"clients": cs}, nil
}

// AlarmLister is implemented by a broker that reports alarms.
type AlarmLister interface {
	AlarmList() any
}

func (s *Server) listAlarms(w http.ResponseWriter, r *http.Request) (int, any, error) {
	al, ok := s.clients.(AlarmLister)
	if !ok {
		return 0, nil, errStatus(http.StatusServiceUnavailable, "no broker attached")
	}
	return http.StatusOK, map[string]any{"alarms": al.AlarmList()}, nil
}

func (s *Server) disconnectClient(w http.ResponseWriter, r *http.Request) (int, any, error) {
	if err := s.noBody(w, r); err != nil {
		return 0, nil, err
	}
	if s.clients == nil {
		return 0, nil, errStatus(http.StatusServiceUnavailable, "no broker attached")
	}
	id := r.PathValue("id")
	if !s.clients.Disconnect(id) {
		return 0, nil, errStatus(http.StatusNotFound, "client %q is not connected", id)
	}
	return http.StatusOK, map[string]any{"client_id": id, "disconnected": true}, nil
}

func (s *Server) ecdhPublicKey(w http.ResponseWriter, r *http.Request) (int, any, error) {
	pub, err := s.reg.BrokerECDHPublicKey()
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]string{"public_key": hex.EncodeToString(pub)}, nil
}

type fleetKeyRequest struct {
	Key     string `json:"key,omitempty"` // hex; generated when empty
	Replace bool   `json:"replace,omitempty"`
}

func (s *Server) setFleetKey(w http.ResponseWriter, r *http.Request) (int, any, error) {
	var req fleetKeyRequest
	if r.ContentLength != 0 {
		if err := s.decode(w, r, &req); err != nil {
			var ae *apiError
			if !errors.As(err, &ae) || ae.msg != "request body required" {
				return 0, nil, err
			}
		}
	}
	if s.reg.HasFleetKey() && !req.Replace {
		return 0, nil, errStatus(http.StatusConflict, "a fleet key is already set; replacing it changes every derived PSK (send replace: true)")
	}
	var key []byte
	generated := req.Key == ""
	if generated {
		key = registry.NewRandomKey()
	} else {
		k, err := hex.DecodeString(req.Key)
		if err != nil {
			return 0, nil, errStatus(http.StatusBadRequest, "key: must be hex")
		}
		key = k
	}
	defer clear(key)
	if err := s.reg.SetFleetKey(key); err != nil {
		return 0, nil, err
	}
	out := map[string]any{"fleet_key_set": true}
	if generated {
		out["key"] = hex.EncodeToString(key)
	}
	return http.StatusOK, out, nil
}

type deriveRequest struct {
	Identity string `json:"identity"`
}

func (s *Server) deriveFleetPSK(w http.ResponseWriter, r *http.Request) (int, any, error) {
	var req deriveRequest
	if err := s.decode(w, r, &req); err != nil {
		return 0, nil, err
	}
	setTarget(r, "identity:"+req.Identity)
	k, err := s.reg.DerivePSK(req.Identity)
	if err != nil {
		return 0, nil, err
	}
	defer clear(k)
	return http.StatusOK, map[string]string{"identity": req.Identity, "key": hex.EncodeToString(k)}, nil
}
