package authn

// Status is the outcome of checking one token, as Envoy's jwt_verify_lib
// names it; String is the text Envoy sends as the body of its reply.
type Status uint8

// The statuses a waypoint can produce (google/jwt_verify_lib status.h).
const (
	StatusOK Status = iota
	StatusJwtMissed
	StatusJwtNotYetValid
	StatusJwtExpired
	StatusJwtBadFormat
	StatusJwtHeaderParseErrorBadBase64
	StatusJwtHeaderParseErrorBadJSON
	StatusJwtHeaderBadAlg
	StatusJwtHeaderNotImplementedAlg
	StatusJwtHeaderBadKid
	StatusJwtPayloadParseErrorBadBase64
	StatusJwtPayloadParseErrorBadJSON
	StatusJwtPayloadParseErrorIssNotString
	StatusJwtPayloadParseErrorSubNotString
	StatusJwtPayloadParseErrorIatNotInteger
	StatusJwtPayloadParseErrorIatOutOfRange
	StatusJwtPayloadParseErrorNbfNotInteger
	StatusJwtPayloadParseErrorNbfOutOfRange
	StatusJwtPayloadParseErrorExpNotInteger
	StatusJwtPayloadParseErrorExpOutOfRange
	StatusJwtPayloadParseErrorJtiNotString
	StatusJwtPayloadParseErrorAudNotString
	StatusJwtSignatureParseErrorBadBase64
	StatusJwtEd25519SignatureWrongLength
	StatusJwtUnknownIssuer
	StatusJwtAudienceNotAllowed
	StatusJwtVerificationFail
	StatusJwksNoValidKeys
	StatusJwksKidAlgMismatch
)

var statusText = [...]string{
	StatusOK:                                "OK",
	StatusJwtMissed:                         "Jwt is missing",
	StatusJwtNotYetValid:                    "Jwt not yet valid",
	StatusJwtExpired:                        "Jwt is expired",
	StatusJwtBadFormat:                      "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
	StatusJwtHeaderParseErrorBadBase64:      "Jwt header is an invalid Base64url encoded",
	StatusJwtHeaderParseErrorBadJSON:        "Jwt header is an invalid JSON",
	StatusJwtHeaderBadAlg:                   "Jwt header [alg] field is required and must be a string",
	StatusJwtHeaderNotImplementedAlg:        "Jwt header [alg] is not supported",
	StatusJwtHeaderBadKid:                   "Jwt header [kid] field is not a string",
	StatusJwtPayloadParseErrorBadBase64:     "Jwt payload is an invalid Base64url encoded",
	StatusJwtPayloadParseErrorBadJSON:       "Jwt payload is an invalid JSON",
	StatusJwtPayloadParseErrorIssNotString:  "Jwt payload [iss] field is not a string",
	StatusJwtPayloadParseErrorSubNotString:  "Jwt payload [sub] field is not a string",
	StatusJwtPayloadParseErrorIatNotInteger: "Jwt payload [iat] field is not an integer",
	StatusJwtPayloadParseErrorIatOutOfRange: "Jwt payload [iat] field is not a positive 64 bit integer",
	StatusJwtPayloadParseErrorNbfNotInteger: "Jwt payload [nbf] field is not an integer",
	StatusJwtPayloadParseErrorNbfOutOfRange: "Jwt payload [nbf] field is not a positive 64 bit integer",
	StatusJwtPayloadParseErrorExpNotInteger: "Jwt payload [exp] field is not an integer",
	StatusJwtPayloadParseErrorExpOutOfRange: "Jwt payload [exp] field is not a positive 64 bit integer",
	StatusJwtPayloadParseErrorJtiNotString:  "Jwt payload [jti] field is not a string",
	StatusJwtPayloadParseErrorAudNotString:  "Jwt payload [aud] field is not a string or string list",
	StatusJwtSignatureParseErrorBadBase64:   "Jwt signature is an invalid Base64url encoded",
	StatusJwtEd25519SignatureWrongLength:    "Jwt ED25519 signature is wrong length",
	StatusJwtUnknownIssuer:                  "Jwt issuer is not configured",
	StatusJwtAudienceNotAllowed:             "Audiences in Jwt are not allowed",
	StatusJwtVerificationFail:               "Jwt verification fails",
	StatusJwksNoValidKeys:                   "Jwks doesn't have any valid public key",
	StatusJwksKidAlgMismatch:                "Jwks doesn't have key to match kid or alg from Jwt",
}

func (s Status) String() string {
	if int(s) < len(statusText) {
		return statusText[s]
	}
	return "unknown status"
}
