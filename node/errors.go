package node

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/refrouter/refrouter/ledger"
	"github.com/valyala/fasthttp"
)

// Error codes of the API (API.md).
const (
	codeInvalid     = "invalid_argument"
	codeUnauth      = "unauthenticated"
	codeDenied      = "permission_denied"
	codeNotFound    = "not_found"
	codeConflict    = "conflict"
	codeUnavailable = "unavailable"
	codeInternal    = "internal"
)

// apiError is an error with the HTTP status and API code it maps to. Handlers
// return errors; writeError is the one place that turns them into responses.
type apiError struct {
	status int
	code   string
	msg    string
}

func (e *apiError) Error() string { return e.code + ": " + e.msg }

func errf(status int, code, format string, args ...any) error {
	return &apiError{status: status, code: code, msg: fmt.Sprintf(format, args...)}
}

func invalid(format string, args ...any) error {
	return errf(fasthttp.StatusBadRequest, codeInvalid, format, args...)
}

// ledgerError maps an error the ledger returned for a command (a rejected
// command, not a failure to reach it) to the API's status and code.
func ledgerError(err error) error {
	switch {
	case errors.Is(err, ledger.ErrNotFound):
		return notFound("%v", err)
	case errors.Is(err, ledger.ErrConflict), errors.Is(err, ledger.ErrExhausted):
		return errf(fasthttp.StatusConflict, codeConflict, "%v", err)
	}
	return invalid("%v", err)
}

func notFound(format string, args ...any) error {
	return errf(fasthttp.StatusNotFound, codeNotFound, format, args...)
}

func unavailable(format string, args ...any) error {
	return errf(fasthttp.StatusServiceUnavailable, codeUnavailable, format, args...)
}

type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// writeError writes err as the API's JSON error body. Errors that are not
// *apiError are internal: logged in full, answered with a generic message.
func (n *Node) writeError(ctx *fasthttp.RequestCtx, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		n.log.Error("request failed", "method", string(ctx.Method()), "path", string(ctx.Path()), "err", err)
		ae = &apiError{status: fasthttp.StatusInternalServerError, code: codeInternal, msg: "internal error"}
	}
	var body errorBody
	body.Error.Code = ae.code
	body.Error.Message = ae.msg
	b, _ := json.Marshal(body)
	ctx.Response.Header.SetContentType("application/json")
	ctx.SetStatusCode(ae.status)
	ctx.SetBody(b)
}

// writeJSON writes v as a JSON body with the given status.
func (n *Node) writeJSON(ctx *fasthttp.RequestCtx, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	ctx.Response.Header.SetContentType("application/json")
	ctx.SetStatusCode(status)
	ctx.SetBody(append(b, '\n'))
	return nil
}
