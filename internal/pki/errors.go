package pki

import "errors"

// Sentinel errors. Functions wrap them with %w and a "pki: " prefix plus
// the file or field concerned; no error string ever contains key material.
var (
	// ErrExists: Init found an existing CA (or one of its files), or an
	// output file already exists; nothing was overwritten.
	ErrExists = errors.New("already exists")
	// ErrNotInitialized: the directory holds no CA (no ca.json).
	ErrNotInitialized = errors.New("no CA in this directory")
	// ErrCorrupt: a CA file is missing, unreadable or inconsistent (for
	// example a key that does not match its certificate).
	ErrCorrupt = errors.New("CA files are damaged or inconsistent")
	// ErrNoProtector: no KeyProtector was given. Use a MasterKey, or
	// PlainProtector to opt in explicitly to unencrypted keys.
	ErrNoProtector = errors.New("no key protector given")
	// ErrNoMasterKey: neither the master key file nor the environment
	// variable exists.
	ErrNoMasterKey = errors.New("no master key")
	// ErrMasterKey: the master key source is unusable (wrong size, bad
	// encoding, file accessible by group or others, both sources set).
	ErrMasterKey = errors.New("unusable master key")
	// ErrWrongKey: sealed data failed authentication: wrong master key, or
	// the file was damaged or tampered with.
	ErrWrongKey = errors.New("wrong master key or damaged key file")
	// ErrInsecureFile: a private key file is accessible by group or others.
	ErrInsecureFile = errors.New("file is accessible by group or others")
	// ErrInvalidRequest: an issuance, CSR or revocation request that cannot
	// be honoured (no names, bad name, bad URL, weak key, bad reason...).
	ErrInvalidRequest = errors.New("invalid request")
	// ErrBadCSR: the CSR does not parse or its signature does not verify.
	ErrBadCSR = errors.New("bad certificate signing request")
	// ErrUnknownSerial: the serial was not issued by this CA.
	ErrUnknownSerial = errors.New("serial not issued by this CA")
	// ErrAlreadyRevoked: the certificate is already revoked.
	ErrAlreadyRevoked = errors.New("already revoked")
	// ErrCAExpired: the issuing CA certificate has expired (or is not yet
	// valid), so it cannot issue.
	ErrCAExpired = errors.New("CA certificate expired")
	// ErrNotTwoTier: an offline-root operation on a one-tier CA, whose root
	// is the online issuer (use CA.Revoke and CA.CRL).
	ErrNotTwoTier = errors.New("CA is not two-tier")
	// ErrForeignCert: RenewServer found a certificate this CA did not issue
	// and will not replace it.
	ErrForeignCert = errors.New("certificate not issued by this CA")
)
