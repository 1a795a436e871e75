package outergate

import (
	"io"
	"net/http"
)

// This file holds what outergate does with request trailers (the header
// fields after a chunked or HTTP/2 body), which the header checks would not
// otherwise see. On protected paths the body is read whole anyway, so the
// trailers are checked like headers and then dropped (protector.checkParams);
// on other paths the body streams through, and the identity header is
// removed from the trailers as it is from the headers.

// dropTrailers applies the header rules of protected requests to the
// trailers that came with the body just read, then removes them all, so
// that nothing follows the checked body upstream. It returns the refusal of
// a method override sent as a trailer.
func dropTrailers(r *http.Request) *apiError {
	aerr := methodOverride(canonicalTrailers(r.Trailer))
	r.Trailer = nil
	return aerr
}

// canonicalTrailers returns t with canonical names: the server fills
// trailers in under their canonical names already, but a trailer declared
// in a Trailer header may have been left in any spelling.
func canonicalTrailers(t http.Header) http.Header {
	out := make(http.Header, len(t))
	for k, v := range t {
		out[http.CanonicalHeaderKey(k)] = v
	}
	return out
}

// Only trailers declared in a Trailer header can reach the upstream: the
// server fills undeclared ones into its own copy of the request, which
// neither outergate nor reverse_proxy (which works on the handlers' copy)
// sees.

// scrubTrailers makes the identity header's removal hold for the trailers
// of a request outergate does not read: its body is wrapped so that, when
// reverse_proxy reads it to the end (and only then copies the trailers
// net/http has just filled in), every spelling of the identity header is
// gone from them. Requests that cannot carry trailers are left alone.
func scrubTrailers(r *http.Request, key string) {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 || (r.ContentLength > 0 && r.ProtoMajor < 2) {
		return
	}
	if r.Trailer != nil {
		// Declared names too: reverse_proxy announces them upstream in a
		// Trailer header before the body is read.
		stripHeader(r.Trailer, key)
	}
	r.Body = &trailerScrubber{ReadCloser: r.Body, r: r, key: key}
}

// trailerScrubber strips the identity header from r's trailers at EOF.
type trailerScrubber struct {
	io.ReadCloser
	r   *http.Request
	key string
}

func (b *trailerScrubber) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF && b.r.Trailer != nil {
		stripHeader(b.r.Trailer, b.key)
	}
	return n, err
}
