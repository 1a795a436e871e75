package outergate

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestEnvelopeReplacesUpstreamHeaders checks writeEnvelope on a header map
// an upstream already filled.
func TestWriteEnvelope(t *testing.T) {
	rec := httptest.NewRecorder()
	rec.Header().Set("Content-Type", "text/html")
	rec.Header().Set("Content-Length", "99999")
	rec.Header().Set("Content-Encoding", "gzip")
	if err := writeEnvelope(rec, http.StatusNotFound, CodeDeviceIDError, "device id error", nil); err != nil {
		t.Fatal(err)
	}
	checkErrorEnvelope(t, rec, http.StatusNotFound, CodeDeviceIDError)
	if rec.Header().Get("Content-Encoding") != "" {
		t.Error("Content-Encoding kept")
	}
	want := `{"meta":{"message":"device id error","code":23030},"data":null}`
	if rec.Body.String() != want {
		t.Fatalf("body = %s, want %s", rec.Body.String(), want)
	}
}
