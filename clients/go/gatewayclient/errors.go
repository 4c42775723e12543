package gatewayclient

import (
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"
)

// Domain is the ErrorInfo domain of every error the gateway emits.
const Domain = "avatargateway.dev"

// ErrorInfo returns the google.rpc.ErrorInfo of a failed gateway call (decoded from the
// google.rpc.Status in the grpc-status-details-bin trailer), or nil when err carries none.
// Its Reason is one of the reasons in the service documentation (SESSION_NOT_FOUND, ...)
// and Metadata has lowerCamelCase keys.
func ErrorInfo(err error) *errdetails.ErrorInfo {
	st, ok := status.FromError(err)
	if !ok || st == nil {
		return nil
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info
		}
	}
	return nil
}
