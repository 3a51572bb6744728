package stepstream

import (
	"context"
	"io"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	pb "github.com/stepstream/stepstream/clients/go/stepstreamv1"
)

func event(runID string, seq uint64, finished bool) *pb.RunEvent {
	e := &pb.RunEvent{RunId: runID, Seq: seq}
	if finished {
		e.Kind = &pb.RunEvent_RunFinished{RunFinished: &pb.RunFinished{ValuesJson: "{}"}}
	} else {
		e.Kind = &pb.RunEvent_SuperstepFinished{SuperstepFinished: &pb.SuperstepFinished{Step: int32(seq)}}
	}
	return e
}

func TestJSONPayloads(t *testing.T) {
	if got := MustJSON(map[string]any{"query": "x"}); got != `{"query":"x"}` {
		t.Fatalf("MustJSON: %s", got)
	}
	if got, _ := EncodeJSON(nil); got != "null" {
		t.Fatalf("EncodeJSON(nil) = %q, want null", got)
	}
	if got, _ := EncodeOptionalJSON(nil); got != "" {
		t.Fatalf("EncodeOptionalJSON(nil) = %q, want absent", got)
	}
	if _, err := EncodeJSON(make(chan int)); err == nil {
		t.Fatal("a channel encoded as JSON")
	}
	values, err := DecodeJSON[struct{ Answer string }](`{"answer": "42"}`)
	if err != nil || values.Answer != "42" {
		t.Fatalf("DecodeJSON: %+v %v", values, err)
	}
	if absent, err := DecodeJSON[map[string]any](""); err != nil || absent != nil {
		t.Fatalf("DecodeJSON of absent: %v %v", absent, err)
	}
	if _, err := DecodeJSON[any]("{x"); err == nil {
		t.Fatal("malformed JSON decoded")
	}
}

func TestKindAndTerminal(t *testing.T) {
	if Kind(event("r", 1, false)) != "superstep_finished" || Kind(event("r", 2, true)) != "run_finished" {
		t.Fatal("Kind does not name the oneof field")
	}
	if Kind(&pb.RunEvent{}) != "" {
		t.Fatal("an event without a kind has a kind")
	}
	if IsTerminal(event("r", 1, false)) || !IsTerminal(event("r", 2, true)) {
		t.Fatal("IsTerminal")
	}
}

func TestCursorDropsDeliveredEvents(t *testing.T) {
	cursor := NewCursor()
	cursor.SetSeen("a", 2)
	fresh := cursor.Take(event("a", 1, false), event("a", 2, false), event("a", 3, false), event("b", 1, false), event("a", 3, false))
	if len(fresh) != 2 || fresh[0].GetSeq() != 3 || fresh[1].GetRunId() != "b" {
		t.Fatalf("Take kept %v", fresh)
	}
	if id, seq, ok := cursor.Unfinished(); !ok || id != "b" || seq != 1 {
		t.Fatalf("Unfinished = %s %d %v", id, seq, ok)
	}
	cursor.Take(event("b", 2, true), event("b", 3, false))
	if !cursor.Ended("b") || cursor.Seen("b") != 2 {
		t.Fatal("events after the last one were taken")
	}
	reopen := ReopenSession(&pb.OpenSession{GraphId: "g", Subgraphs: true, BatchEvents: true}, "s1", cursor)
	if reopen.GetSessionId() != "s1" || reopen.GetGraphId() != "" || !reopen.GetSubgraphs() || !reopen.GetBatchEvents() ||
		reopen.GetResumeRunId() != "a" || reopen.GetAfterSeq() != 3 {
		t.Fatalf("ReopenSession = %v", reopen)
	}
}

func TestResponseEventsSingleOrBatched(t *testing.T) {
	single := &pb.SessionStreamResponse{Kind: &pb.SessionStreamResponse_Event{Event: event("a", 1, false)}}
	if got := ResponseEvents(single); len(got) != 1 || got[0].GetSeq() != 1 {
		t.Fatalf("single event: %v", got)
	}
	batch := &pb.SessionStreamResponse{Kind: &pb.SessionStreamResponse_Events{Events: &pb.RunEventBatch{
		Events: []*pb.RunEvent{event("a", 2, false), event("a", 3, false), event("a", 4, true)},
	}}}
	got := ResponseEvents(batch)
	if len(got) != 3 || got[0].GetSeq() != 2 || got[1].GetSeq() != 3 || !IsTerminal(got[2]) {
		t.Fatalf("batch: %v", got)
	}
	answer := &pb.SessionStreamResponse{RequestId: "r1", Kind: &pb.SessionStreamResponse_Run{Run: &pb.Run{RunId: "a"}}}
	if got := ResponseEvents(answer); len(got) != 0 {
		t.Fatalf("an answer carries events: %v", got)
	}
	empty := &pb.SessionStreamResponse{Kind: &pb.SessionStreamResponse_Events{Events: &pb.RunEventBatch{}}}
	if got := ResponseEvents(empty); len(got) != 0 {
		t.Fatalf("an empty batch carries events: %v", got)
	}
}

// fakeRuns answers JoinRun with one fakeStream; FollowRun calls nothing else once the run has ended.
type fakeRuns struct {
	pb.RunServiceClient
	stream *fakeStream
}

func (f *fakeRuns) JoinRun(
	ctx context.Context, _ *pb.JoinRunRequest, _ ...grpc.CallOption,
) (grpc.ServerStreamingClient[pb.JoinRunResponse], error) {
	f.stream.ctx = ctx
	return f.stream, nil
}

// fakeStream sends its responses, then closes, or with stayOpen waits for the call to be cancelled.
type fakeStream struct {
	grpc.ClientStream
	ctx       context.Context
	responses []*pb.JoinRunResponse
	stayOpen  bool
	closed    bool // the close (io.EOF) was read
	cancelled bool // the call was cancelled before its close was read
}

func (s *fakeStream) Recv() (*pb.JoinRunResponse, error) {
	if len(s.responses) > 0 {
		response := s.responses[0]
		s.responses = s.responses[1:]
		return response, nil
	}
	if s.stayOpen {
		<-s.ctx.Done()
		return nil, status.FromContextError(s.ctx.Err()).Err()
	}
	s.closed, s.cancelled = true, s.ctx.Err() != nil
	return nil, io.EOF
}

// followFake follows a run of three events through stream, stopping at the last
// one, and tells whether by then the stream had closed, or been cancelled.
func followFake(t *testing.T, stream *fakeStream) (seqs []uint64, closed, cancelled bool) {
	t.Helper()
	stream.responses = []*pb.JoinRunResponse{
		{Events: []*pb.RunEvent{event("r", 1, false)}},
		{Events: []*pb.RunEvent{event("r", 2, false), event("r", 3, true)}},
	}
	for event, err := range FollowRun(context.Background(), &fakeRuns{stream: stream}, &pb.JoinRunRequest{RunId: "r"}, FollowOptions{}) {
		if err != nil {
			t.Fatalf("FollowRun: %v", err)
		}
		seqs = append(seqs, event.GetSeq())
		if IsTerminal(event) {
			return seqs, stream.closed, stream.ctx.Err() != nil
		}
	}
	t.Fatalf("FollowRun ended after %v without the last event", seqs)
	return
}

func TestFollowRunReadsToTheServersClose(t *testing.T) {
	stream := &fakeStream{}
	seqs, closed, cancelled := followFake(t, stream)
	if len(seqs) != 3 || seqs[2] != 3 {
		t.Fatalf("delivered %v", seqs)
	}
	if !closed || stream.cancelled || cancelled {
		t.Fatalf("the last event came before the stream was read to its close (closed %v, cancelled %v)",
			closed, stream.cancelled || cancelled)
	}
}

func TestFollowRunCancelsAStreamLeftOpen(t *testing.T) {
	stream := &fakeStream{stayOpen: true}
	start := time.Now()
	seqs, _, cancelled := followFake(t, stream)
	waited := time.Since(start)
	if len(seqs) != 3 || seqs[2] != 3 {
		t.Fatalf("delivered %v", seqs)
	}
	if !cancelled {
		t.Fatal("the last event came before the stream left open was cancelled")
	}
	if waited < closeWait || waited > closeWait+time.Second {
		t.Fatalf("gave up on the close after %v, want %v", waited, closeWait)
	}
}
