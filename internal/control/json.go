package control

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// MaxRequestBody bounds what DecodeJSON reads. A batch of 10,000 bans is
// well under it; larger imports should be split by the caller.
const MaxRequestBody = 1 << 20

// WriteJSON answers with status and v encoded as JSON. v is encoded before
// anything is written, so an encoding failure still becomes a clean 500.
// A 204 carries no body.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	if status == http.StatusNoContent {
		w.WriteHeader(status)
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(errorBody{Error: "control: encoding the answer: " + err.Error()})
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// WriteError answers with status and {"error": err's text}. The text is
// what the CLI shows the admin, so it should say what to do.
func WriteError(w http.ResponseWriter, status int, err error) {
	msg := http.StatusText(status)
	if err != nil {
		msg = err.Error()
	}
	WriteJSON(w, status, errorBody{Error: msg})
}

// DecodeJSON decodes the request body, one JSON value of at most
// MaxRequestBody bytes, into v. Unknown fields are errors, so that a CLI
// newer than the daemon is told rather than silently ignored. The error
// says what is wrong with the body; answer it with WriteError and
// http.StatusBadRequest.
func DecodeJSON(r *http.Request, v any) error {
	// No ResponseWriter: the server then drains or drops the rest itself.
	body := http.MaxBytesReader(nil, r.Body, MaxRequestBody)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return bodyError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			return bodyError(err)
		}
		return errors.New("request body: unexpected data after the JSON value")
	}
	return nil
}

// bodyError words a decoding failure for the admin, keeping err as its
// cause (errors.As finds *http.MaxBytesError, for a 413).
func bodyError(err error) error {
	var (
		mbe *http.MaxBytesError
		se  *json.SyntaxError
		te  *json.UnmarshalTypeError
		msg string
	)
	switch {
	case errors.Is(err, io.EOF):
		msg = "request body is empty: want a JSON value"
	case errors.Is(err, io.ErrUnexpectedEOF):
		msg = "request body: JSON ends too soon"
	case errors.As(err, &mbe):
		msg = fmt.Sprintf("request body is larger than %d KiB: send it in smaller batches", MaxRequestBody>>10)
	case errors.As(err, &se):
		msg = fmt.Sprintf("request body: invalid JSON at byte %d: %s", se.Offset, strings.TrimPrefix(se.Error(), "json: "))
	case errors.As(err, &te) && te.Field != "":
		msg = fmt.Sprintf("request body: field %q: want %s, got %s", te.Field, te.Type, te.Value)
	case errors.As(err, &te):
		msg = fmt.Sprintf("request body: want %s, got %s", te.Type, te.Value)
	default:
		// Unknown fields and the like: json words them well past its prefix.
		msg = "request body: " + strings.TrimPrefix(err.Error(), "json: ")
	}
	return &causeError{msg: msg, causes: []error{err}}
}
