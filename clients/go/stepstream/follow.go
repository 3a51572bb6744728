package stepstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/stepstream/stepstream/clients/go/stepstreamv1"
)

// FollowOptions bound how long FollowRun keeps trying to reconnect.
type FollowOptions struct {
	// ReconnectTimeout: total time spent reconnecting without receiving an
	// event before giving up (default 30 s).
	ReconnectTimeout time.Duration
	// FirstDelay and MaxDelay shape the exponential pause between attempts
	// (default 50 ms doubling up to 2 s).
	FirstDelay, MaxDelay time.Duration
}

func (o FollowOptions) withDefaults() FollowOptions {
	if o.ReconnectTimeout <= 0 {
		o.ReconnectTimeout = 30 * time.Second
	}
	if o.FirstDelay <= 0 {
		o.FirstDelay = 50 * time.Millisecond
	}
	if o.MaxDelay <= 0 {
		o.MaxDelay = 2 * time.Second
	}
	return o
}

// FollowRun streams a run's events with JoinRun from request.AfterSeq until
// the run's last event. When the stream breaks (UNAVAILABLE, or a clean end
// before the run has ended, as a draining replica does) it joins again from
// the last seq delivered, so every event arrives once, in order. Other
// errors end the iteration with that error.
//
//	for event, err := range stepstream.FollowRun(ctx, runs, &pb.JoinRunRequest{RunId: id}, stepstream.FollowOptions{}) {
//		if err != nil { ... }
//		fmt.Println(event.GetSeq(), stepstream.Kind(event))
//	}
func FollowRun(
	ctx context.Context, client pb.RunServiceClient, request *pb.JoinRunRequest, options FollowOptions,
) iter.Seq2[*pb.RunEvent, error] {
	options = options.withDefaults()
	return func(yield func(*pb.RunEvent, error) bool) {
		cursor := NewCursor()
		runID := request.GetRunId()
		cursor.SetSeen(runID, request.GetAfterSeq())
		var brokenSince time.Time
		delay := options.FirstDelay
		for {
			join := &pb.JoinRunRequest{
				RunId: runID, AfterSeq: cursor.Seen(runID),
				EventKinds: request.GetEventKinds(), Subgraphs: request.GetSubgraphs(),
			}
			err := joinOnce(ctx, client, join, cursor, func(event *pb.RunEvent) bool {
				brokenSince, delay = time.Time{}, options.FirstDelay
				return yield(event, nil)
			})
			if errors.Is(err, errStopped) || cursor.Ended(runID) {
				return
			}
			if err == nil { // a clean end before the run's last event
				ended, getErr := runIsOver(ctx, client, runID, cursor.Seen(runID))
				if getErr == nil && ended {
					return
				}
				err = status.Errorf(codes.Unavailable, "the event stream of run %s ended before the run", runID)
			}
			if status.Code(err) != codes.Unavailable {
				yield(nil, err)
				return
			}
			if brokenSince.IsZero() {
				brokenSince = time.Now()
			}
			if time.Since(brokenSince) >= options.ReconnectTimeout {
				yield(nil, fmt.Errorf("stepstream: gave up reconnecting to run %s: %w", runID, err))
				return
			}
			select {
			case <-ctx.Done():
				yield(nil, ctx.Err())
				return
			case <-time.After(delay):
			}
			delay = min(delay*2, options.MaxDelay)
		}
	}
}

var errStopped = errors.New("the caller stopped iterating")

// closeWait bounds the wait for the server to close a stream whose run's last event has come.
const closeWait = time.Second

// joinOnce reads one JoinRun stream to its end; nil means it ended cleanly.
func joinOnce(
	ctx context.Context, client pb.RunServiceClient, request *pb.JoinRunRequest,
	cursor *Cursor, deliver func(*pb.RunEvent) bool,
) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := client.JoinRun(ctx, request)
	if err != nil {
		return err
	}
	for {
		response, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		events := cursor.Take(response.GetEvents()...)
		ended := cursor.Ended(request.GetRunId())
		if ended {
			closedByServer(stream, cancel)
		}
		for _, event := range events {
			if !deliver(event) {
				return errStopped
			}
		}
		if ended {
			return nil
		}
	}
}

// closedByServer reads a stream to its end after the run's last event, before
// that event is delivered (a caller may stop there). The server closes the
// stream right after that event; cancelling the call first instead costs both
// sides a reset HTTP/2 stream and the server a cancelled handler. A close that
// has not come within closeWait is not waited for: cancel ends the call.
func closedByServer(stream grpc.ServerStreamingClient[pb.JoinRunResponse], cancel context.CancelFunc) {
	late := time.AfterFunc(closeWait, cancel)
	defer late.Stop()
	for {
		if _, err := stream.Recv(); err != nil {
			return // io.EOF, or an error now that the events are all in: either way done
		}
	}
}

func runIsOver(ctx context.Context, client pb.RunServiceClient, runID string, seen uint64) (bool, error) {
	response, err := client.GetRun(ctx, &pb.GetRunRequest{RunId: runID})
	if err != nil {
		return false, err
	}
	switch response.GetRun().GetStatus() {
	case pb.RunStatus_RUN_STATUS_SUCCEEDED, pb.RunStatus_RUN_STATUS_INTERRUPTED,
		pb.RunStatus_RUN_STATUS_FAILED, pb.RunStatus_RUN_STATUS_CANCELLED:
		return response.GetRun().GetLastSeq() <= seen, nil
	}
	return false, nil
}
