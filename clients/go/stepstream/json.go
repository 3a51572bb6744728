// Package stepstream is a thin helper over the generated stubs of package
// stepstreamv1: the contract's JSON payloads, event kinds, and run streams
// that reconnect from the last seq seen.
package stepstream

import (
	"encoding/json"
	"fmt"
)

// EncodeJSON encodes a value for a `_json` field that must be present: nil
// becomes "null" (e.g. a resume value answering an interrupt with null).
func EncodeJSON(value any) (string, error) {
	data, err := json.Marshal(value)
	if err != nil {
		return "", fmt.Errorf("stepstream: payload is not JSON: %w", err)
	}
	return string(data), nil
}

// EncodeOptionalJSON encodes an optional payload: nil becomes "", which the
// contract reads as absent.
func EncodeOptionalJSON(value any) (string, error) {
	if value == nil {
		return "", nil
	}
	return EncodeJSON(value)
}

// MustJSON is EncodeJSON for values known to be JSON (literals, maps of
// strings): it panics on failure.
func MustJSON(value any) string {
	text, err := EncodeJSON(value)
	if err != nil {
		panic(err)
	}
	return text
}

// DecodeJSON decodes a `_json` field into a T; "" (absent) gives T's zero value.
func DecodeJSON[T any](text string) (T, error) {
	var value T
	if text == "" {
		return value, nil
	}
	if err := json.Unmarshal([]byte(text), &value); err != nil {
		return value, fmt.Errorf("stepstream: %w", err)
	}
	return value, nil
}
