package authn

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"math"
	"strings"
)

// jwt is one parsed token (jwt_verify_lib Jwt::parseFromString).
type jwt struct {
	raw        string
	payloadB64 string         // as in the token, for outputPayloadToHeader
	payload    map[string]any // decoded JSON; numbers are float64
	alg, kid   string
	iss, sub   string
	hasIss     bool
	hasSub     bool
	nbf, exp   uint64
	aud        []string
	sig        []byte
}

// implementedAlgs are the algorithms jwt_verify_lib accepts in a header.
var implementedAlgs = map[string]bool{
	"ES256": true, "ES384": true, "ES512": true,
	"HS256": true, "HS384": true, "HS512": true,
	"RS256": true, "RS384": true, "RS512": true,
	"PS256": true, "PS384": true, "PS512": true,
	"EdDSA": true,
}

// parseJWT checks the structure and the registered claims of a token, in
// jwt_verify_lib's order, so that a malformed token reports the same status
// as Envoy.
func parseJWT(s string) (*jwt, Status) {
	if strings.Count(s, ".") != 2 {
		return nil, StatusJwtBadFormat
	}
	parts := strings.Split(s, ".")
	if parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return nil, StatusJwtBadFormat // absl::SkipEmpty leaves fewer than 3
	}
	j := &jwt{raw: s, payloadB64: parts[1]}
	hb, ok := b64(parts[0])
	if !ok {
		return nil, StatusJwtHeaderParseErrorBadBase64
	}
	header, ok := jsonObject(hb)
	if !ok {
		return nil, StatusJwtHeaderParseErrorBadJSON
	}
	alg, isStr := header["alg"].(string)
	if !isStr {
		return nil, StatusJwtHeaderBadAlg
	}
	if !implementedAlgs[alg] {
		return nil, StatusJwtHeaderNotImplementedAlg
	}
	j.alg = alg
	if v, present := header["kid"]; present {
		kid, isStr := v.(string)
		if !isStr {
			return nil, StatusJwtHeaderBadKid
		}
		j.kid = kid
	}
	pb, ok := b64(parts[1])
	if !ok {
		return nil, StatusJwtPayloadParseErrorBadBase64
	}
	if j.payload, ok = jsonObject(pb); !ok {
		return nil, StatusJwtPayloadParseErrorBadJSON
	}
	var st Status
	if j.iss, j.hasIss, st = stringClaim(j.payload, "iss", StatusJwtPayloadParseErrorIssNotString); st != StatusOK {
		return nil, st
	}
	if j.sub, j.hasSub, st = stringClaim(j.payload, "sub", StatusJwtPayloadParseErrorSubNotString); st != StatusOK {
		return nil, st
	}
	if _, st = timeClaim(j.payload, "iat", StatusJwtPayloadParseErrorIatNotInteger, StatusJwtPayloadParseErrorIatOutOfRange); st != StatusOK {
		return nil, st
	}
	if j.nbf, st = timeClaim(j.payload, "nbf", StatusJwtPayloadParseErrorNbfNotInteger, StatusJwtPayloadParseErrorNbfOutOfRange); st != StatusOK {
		return nil, st
	}
	if j.exp, st = timeClaim(j.payload, "exp", StatusJwtPayloadParseErrorExpNotInteger, StatusJwtPayloadParseErrorExpOutOfRange); st != StatusOK {
		return nil, st
	}
	if _, _, st = stringClaim(j.payload, "jti", StatusJwtPayloadParseErrorJtiNotString); st != StatusOK {
		return nil, st
	}
	switch v := j.payload["aud"].(type) {
	case nil:
		if _, present := j.payload["aud"]; present {
			return nil, StatusJwtPayloadParseErrorAudNotString
		}
	case string:
		j.aud = []string{v}
	case []any:
		for _, e := range v {
			s, isStr := e.(string)
			if !isStr {
				return nil, StatusJwtPayloadParseErrorAudNotString
			}
			j.aud = append(j.aud, s)
		}
	default:
		return nil, StatusJwtPayloadParseErrorAudNotString
	}
	if j.sig, ok = b64(parts[2]); !ok {
		return nil, StatusJwtSignatureParseErrorBadBase64
	}
	return j, StatusOK
}

// b64 decodes base64url with or without padding (absl::WebSafeBase64Unescape).
func b64(s string) ([]byte, bool) {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	return b, err == nil
}

// jsonObject decodes a JSON object (protobuf's JsonStringToMessage into a
// Struct refuses anything else).
func jsonObject(b []byte) (map[string]any, bool) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return nil, false
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil || m == nil {
		return nil, false
	}
	return m, true
}

func stringClaim(payload map[string]any, name string, wrong Status) (string, bool, Status) {
	v, present := payload[name]
	if !present {
		return "", false, StatusOK
	}
	s, ok := v.(string)
	if !ok {
		return "", false, wrong
	}
	return s, true, StatusOK
}

// timeClaim reads a NumericDate as StructUtils::GetUInt64 does: a JSON
// number, not negative, below 2^64, truncated.
func timeClaim(payload map[string]any, name string, wrong, outOfRange Status) (uint64, Status) {
	v, present := payload[name]
	if !present {
		return 0, StatusOK
	}
	f, ok := v.(float64)
	if !ok {
		return 0, wrong
	}
	if f < 0 || f >= math.MaxUint64 {
		return 0, outOfRange
	}
	return uint64(f), StatusOK
}

// checkTime applies nbf and exp with Envoy's clock skew (Jwt::verifyTimeConstraint).
func (j *jwt) checkTime(now int64) Status {
	var secs uint64
	if now > 0 {
		secs = uint64(now)
	}
	if secs+clockSkew < j.nbf {
		return StatusJwtNotYetValid
	}
	if j.exp != 0 && secs > j.exp && secs-j.exp > clockSkew {
		return StatusJwtExpired
	}
	return StatusOK
}
