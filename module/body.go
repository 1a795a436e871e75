package outergate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"unicode"
)

// drainLimit bounds how much of an oversized body is read and thrown away
// before answering 413, so that the client sees the answer instead of a
// reset connection.
const drainLimit = 1 << 20

// bodyKind is the content type of a request body outergate can read.
type bodyKind int

const (
	bodyOther bodyKind = iota
	bodyForm
	bodyJSON
)

// contentKind classifies a Content-Type header value.
func contentKind(contentType string) bodyKind {
	if contentType == "" {
		return bodyOther
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return bodyOther
	}
	switch mt {
	case "application/x-www-form-urlencoded":
		return bodyForm
	case "application/json":
		return bodyJSON
	}
	return bodyOther
}

// repeatedContentType refuses a request with more than one Content-Type
// field: outergate would read the body as the first says and a backend may
// read it as the last says, so the checks would run on a reading the
// backend does not share (RFC 9110 §8.3 makes the field a singleton).
func repeatedContentType(h http.Header) *apiError {
	if len(h.Values("Content-Type")) > 1 {
		return badRequest("Content-Type given more than once")
	}
	return nil
}

// contentEncoded reports whether a body is sent with a Content-Encoding
// (gzip, deflate, ...): outergate does not decode request bodies, so such a
// body cannot be inspected. "identity" is no encoding.
func contentEncoded(h http.Header) bool {
	for _, v := range h.Values("Content-Encoding") {
		for enc := range strings.SplitSeq(v, ",") {
			if enc = strings.TrimSpace(enc); enc != "" && !strings.EqualFold(enc, "identity") {
				return true
			}
		}
	}
	return false
}

// unsupportedMedia is the refusal of a body outergate cannot inspect.
func unsupportedMedia(message string) *apiError {
	return newAPIError(http.StatusUnsupportedMediaType, CodeBadRequest, message)
}

// hasBody reports whether the request carries a body.
func hasBody(r *http.Request) bool {
	return r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
}

// readBody reads the whole request body, up to maxBodyBytes. Past the limit
// it discards a bounded remainder and answers 413, closing the connection.
func readBody(r *http.Request) ([]byte, *apiError) {
	if !hasBody(r) {
		return nil, nil
	}
	if r.ContentLength > maxBodyBytes {
		return nil, tooLarge(r)
	}
	ct := r.Header.Get("Content-Type")
	if aerr := foreignCharset(ct); aerr != nil {
		return nil, aerr
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
	if err != nil {
		return nil, badRequest("could not read the request body")
	}
	if len(body) > maxBodyBytes {
		return nil, tooLarge(r)
	}
	if aerr := foreignEncoding(ct, body); aerr != nil {
		return nil, aerr
	}
	return body, nil
}

// textMediaType returns the media type and parameters of a form or JSON
// (application/json, any +json type) Content-Type; ok is false for others.
func textMediaType(contentType string) (mt string, ps map[string]string, ok bool) {
	mt, ps, err := mime.ParseMediaType(contentType)
	if err != nil {
		return "", nil, false
	}
	return mt, ps, mt == "application/x-www-form-urlencoded" || mt == "application/json" || strings.HasSuffix(mt, "+json")
}

// foreignCharset refuses (415) a form or JSON body declared in a charset
// other than UTF-8 (or its subset US-ASCII): outergate reads it as UTF-8,
// and a backend that honours the charset (Jackson, .NET, servlet forms)
// would read other parameters out of the same bytes. The charset is
// matched in any case, quoted or not. Any other parameter is refused too:
// none changes how a form or JSON body is read, but a backend that looks
// for "/json" anywhere in the header (Laravel's isJson) would read
// "application/x-www-form-urlencoded; x=/json" as JSON.
func foreignCharset(contentType string) *apiError {
	_, ps, ok := textMediaType(contentType)
	if !ok {
		return nil
	}
	for name, v := range ps {
		if name != "charset" {
			return unsupportedMedia("unsupported Content-Type parameter: a form or JSON body takes only charset")
		}
		switch strings.ToLower(v) {
		case "utf-8", "utf8", "us-ascii":
		default:
			return unsupportedMedia("unsupported charset: send the body in UTF-8")
		}
	}
	return nil
}

// foreignEncoding refuses (415) a JSON body that starts with a byte order
// mark or in UTF-16 or UTF-32 (a NUL among its first four bytes, RFC 4627
// §3): Go's decoder reads it as malformed UTF-8 where Jackson and .NET
// detect the encoding and read it whole.
func foreignEncoding(contentType string, body []byte) *apiError {
	mt, _, ok := textMediaType(contentType)
	if !ok || mt == "application/x-www-form-urlencoded" {
		return nil
	}
	head := body[:min(len(body), 4)]
	if bytes.HasPrefix(head, []byte{0xef, 0xbb, 0xbf}) || bytes.HasPrefix(head, []byte{0xfe, 0xff}) ||
		bytes.HasPrefix(head, []byte{0xff, 0xfe}) || bytes.IndexByte(head, 0) >= 0 {
		return unsupportedMedia("a JSON body must be UTF-8, without a byte order mark")
	}
	return nil
}

func tooLarge(r *http.Request) *apiError {
	_, _ = io.CopyN(io.Discard, r.Body, drainLimit)
	return newAPIError(http.StatusRequestEntityTooLarge, CodeBadRequest,
		"request body too large (limit 64 KiB)", "Connection", "close")
}

// restoreBody puts a body that was read back on the request, byte for byte.
func restoreBody(r *http.Request, body []byte) {
	r.Body = &restoredBody{Reader: bytes.NewReader(body), raw: body}
	r.ContentLength = int64(len(body))
	r.GetBody = func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(body)), nil
	}
}

// restoredBody is a body read whole and put back: it keeps the bytes, so
// that a later check (overrideParam) reads them without a copy.
type restoredBody struct {
	*bytes.Reader
	raw []byte
}

func (*restoredBody) Close() error { return nil }

// forwardedBody returns the body a request will be forwarded with, reading
// it whole (and putting it back) unless restoreBody already holds it.
func forwardedBody(r *http.Request) ([]byte, *apiError) {
	if b, ok := r.Body.(*restoredBody); ok && b.Len() == len(b.raw) {
		return b.raw, nil
	}
	raw, aerr := readBody(r)
	if aerr != nil {
		return nil, aerr
	}
	restoreBody(r, raw)
	return raw, nil
}

// params are request parameters by name, as a form or a JSON object gives
// them. A JSON value that is not a string is recorded with notString set.
// JSON keys are kept folded (foldKey), because the JSON decoders of the
// backends (Go's encoding/json, Jackson with case-insensitive properties)
// read "deviceid", "DeviceID" and "DEVICEıD" as one field: a second
// spelling is a duplicate, and any spelling is the parameter.
type params struct {
	values map[string][]paramValue
	folded bool
}

// get returns the values of the parameter name.
func (p params) get(name string) []paramValue {
	if p.folded {
		return p.values[foldKey(name)]
	}
	return p.values[name]
}

// foldKey folds a JSON key as encoding/json matches field names (each rune
// lower-cased then upper-cased, so that 'ſ' is 'S' and 'K' (Kelvin) is 'K'),
// which also covers Jackson's lower-casing.
func foldKey(k string) string {
	return strings.Map(func(r rune) rune { return unicode.ToUpper(unicode.ToLower(r)) }, k)
}

type paramValue struct {
	value     string
	notString bool
}

// parseFormParams parses an application/x-www-form-urlencoded body strictly.
func parseFormParams(s string) (params, error) {
	vals, err := url.ParseQuery(s)
	if err != nil {
		return params{}, errors.New("malformed form body")
	}
	p := params{values: make(map[string][]paramValue, len(vals))}
	for k, vs := range vals {
		for _, v := range vs {
			p.values[k] = append(p.values[k], paramValue{value: v})
		}
	}
	return p, nil
}

// parseJSONParams parses a body that must be one JSON object, keeping
// repeated keys (which encoding/json would silently merge) as repeats.
func parseJSONParams(body []byte) (params, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return params{}, errors.New("malformed JSON body")
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return params{}, errors.New("JSON body must be an object")
	}
	p := params{values: make(map[string][]paramValue), folded: true}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return params{}, errors.New("malformed JSON body")
		}
		key, _ := tok.(string)
		key = foldKey(key)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return params{}, errors.New("malformed JSON body")
		}
		// null is no string either: json.Unmarshal would leave s "".
		var s string
		if err := json.Unmarshal(raw, &s); err != nil || bytes.Equal(raw, []byte("null")) {
			p.values[key] = append(p.values[key], paramValue{notString: true})
			continue
		}
		p.values[key] = append(p.values[key], paramValue{value: s})
	}
	if _, err := dec.Token(); err != nil {
		return params{}, errors.New("malformed JSON body")
	}
	if _, err := dec.Token(); err != io.EOF {
		return params{}, errors.New("trailing data after the JSON object")
	}
	return p, nil
}

// parseBodyParams parses a form or JSON body; other kinds yield no params.
func parseBodyParams(kind bodyKind, body []byte) (params, error) {
	switch kind {
	case bodyForm:
		return parseFormParams(string(body))
	case bodyJSON:
		if len(bytes.TrimSpace(body)) == 0 {
			return params{folded: true}, nil
		}
		return parseJSONParams(body)
	}
	return params{}, nil
}

// single returns the one string value of name in any of the sources. It
// fails when the parameter is repeated, empty, not a string, or holds
// control characters; found is false when it is absent everywhere.
func single(name string, sources ...params) (value string, found bool, err error) {
	n := 0
	for _, src := range sources {
		for _, v := range src.get(name) {
			n++
			if v.notString {
				return "", true, fmt.Errorf("%s must be a string", name)
			}
			value = v.value
		}
	}
	switch {
	case n == 0:
		return "", false, nil
	case n > 1:
		return "", true, fmt.Errorf("duplicate parameter %s", name)
	case value == "":
		return "", true, fmt.Errorf("%s must not be empty", name)
	case hasControl(value):
		return "", true, fmt.Errorf("%s holds control characters", name)
	}
	return value, true, nil
}

// optional is single for a parameter whose empty value means the same as
// its absence (RFC 6749 §2.3.1 for client_secret, §3.3 for scope): a
// present, empty value yields "", not an error. Repeats still fail.
func optional(name string, p params) (string, error) {
	if vs := p.get(name); len(vs) == 1 && !vs[0].notString && vs[0].value == "" {
		return "", nil
	}
	v, _, err := single(name, p)
	return v, err
}

// hasControl reports whether s holds an ASCII control character.
func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}
