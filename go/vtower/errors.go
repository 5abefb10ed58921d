package vtower

/*
#include <vtower.h>
*/
import "C"

// Status is a vtower status code (the C API's vt_status). The values are stable.
// A Status is also an error value, so errors.Is(err, vtower.StatusIO) tests a failure's
// code.
type Status int

// The status codes of the C API.
const (
	StatusOK              Status = C.VT_OK
	StatusInvalidArgument Status = C.VT_ERR_INVALID_ARGUMENT
	StatusIO              Status = C.VT_ERR_IO
	StatusUnsupported     Status = C.VT_ERR_UNSUPPORTED_MODEL
	StatusBadConfig       Status = C.VT_ERR_BAD_CONFIG
	StatusBadWeights      Status = C.VT_ERR_BAD_WEIGHTS
	StatusImageDecode     Status = C.VT_ERR_IMAGE_DECODE
	StatusImageTooLarge   Status = C.VT_ERR_IMAGE_TOO_LARGE
	StatusDevice          Status = C.VT_ERR_DEVICE
	StatusOutOfMemory     Status = C.VT_ERR_OUT_OF_MEMORY
	StatusCompute         Status = C.VT_ERR_COMPUTE
	StatusPanic           Status = C.VT_ERR_PANIC
	// StatusCancelled: the job was cancelled (Job.Cancel, Job.Close) before it finished.
	StatusCancelled Status = C.VT_ERR_CANCELLED
)

// String is the library's description of the code ("i/o error", ...).
func (s Status) String() string {
	return C.GoString(C.vt_status_str(C.vt_status(s)))
}

// Error makes a Status usable as a target of errors.Is; it is the same as String.
func (s Status) Error() string {
	return s.String()
}

// Error is a failed vtower call: its status code and the library's message, which says
// precisely what failed. Use errors.As(err, &e) with e *vtower.Error to read it.
type Error struct {
	Status  Status
	Message string
}

func (e *Error) Error() string {
	return "vtower: " + e.Message
}

// Is reports whether target is this error's Status (errors.Is(err, vtower.StatusIO)).
func (e *Error) Is(target error) bool {
	s, ok := target.(Status)
	return ok && s == e.Status
}

// takeError converts and frees the error a failed call returned.
func takeError(st C.vt_status, cerr *C.struct_vt_error) *Error {
	if cerr == nil {
		return &Error{Status: Status(st), Message: Status(st).String()}
	}
	defer C.vt_error_free(cerr)
	return &Error{Status: Status(C.vt_error_code(cerr)), Message: C.GoString(C.vt_error_message(cerr))}
}
