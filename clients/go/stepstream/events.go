package stepstream

import (
	pb "github.com/stepstream/stepstream/clients/go/stepstreamv1"
)

// Kind is the name of the event's oneof field, e.g. "task_finished".
func Kind(event *pb.RunEvent) string {
	message := event.ProtoReflect()
	field := message.WhichOneof(message.Descriptor().Oneofs().ByName("kind"))
	if field == nil {
		return "" // a kind newer than these stubs
	}
	return string(field.Name())
}

// IsTerminal is true for a run's last event: finished, failed or cancelled.
func IsTerminal(event *pb.RunEvent) bool {
	switch event.GetKind().(type) {
	case *pb.RunEvent_RunFinished, *pb.RunEvent_RunFailed, *pb.RunEvent_RunCancelled:
		return true
	}
	return false
}

// ResponseEvents returns the run events a session stream response carries, in
// order: one for SessionStreamResponse.event, a batch's events for
// SessionStreamResponse.events (streams opened with batch_events), none for
// the answers to actions.
func ResponseEvents(response *pb.SessionStreamResponse) []*pb.RunEvent {
	if event := response.GetEvent(); event != nil {
		return []*pb.RunEvent{event}
	}
	return response.GetEvents().GetEvents()
}

// Cursor remembers the last seq delivered of each run and drops what was
// seen already, so a stream reopened from it yields every event once, in order.
type Cursor struct {
	seq   map[string]uint64
	ended map[string]bool
	order []string
}

// NewCursor starts with nothing seen.
func NewCursor() *Cursor {
	return &Cursor{seq: map[string]uint64{}, ended: map[string]bool{}}
}

// Seen returns the last seq delivered of a run (0: none).
func (c *Cursor) Seen(runID string) uint64 { return c.seq[runID] }

// SetSeen records that a run's events up to seq were delivered elsewhere.
func (c *Cursor) SetSeen(runID string, seq uint64) {
	if _, known := c.seq[runID]; !known {
		c.order = append(c.order, runID)
	}
	c.seq[runID] = seq
}

// Ended reports whether the run's last event was delivered.
func (c *Cursor) Ended(runID string) bool { return c.ended[runID] }

// Take returns the events not delivered before, recording them as delivered.
func (c *Cursor) Take(events ...*pb.RunEvent) []*pb.RunEvent {
	var fresh []*pb.RunEvent
	for _, event := range events {
		runID := event.GetRunId()
		if c.ended[runID] || event.GetSeq() <= c.seq[runID] {
			continue
		}
		c.SetSeen(runID, event.GetSeq())
		c.ended[runID] = IsTerminal(event)
		fresh = append(fresh, event)
	}
	return fresh
}

// Unfinished returns the run seen last whose final event has not come, if any.
func (c *Cursor) Unfinished() (runID string, afterSeq uint64, ok bool) {
	for i := len(c.order) - 1; i >= 0; i-- {
		if id := c.order[i]; !c.ended[id] {
			return id, c.seq[id], true
		}
	}
	return "", 0, false
}

// ReopenSession is the OpenSession that continues a broken session stream:
// the same options on the session it opened, with the events of the latest
// unfinished run after the last seq seen.
func ReopenSession(open *pb.OpenSession, sessionID string, cursor *Cursor) *pb.OpenSession {
	reopen := &pb.OpenSession{
		SessionId:   sessionID,
		EventKinds:  open.GetEventKinds(),
		Subgraphs:   open.GetSubgraphs(),
		BatchEvents: open.GetBatchEvents(),
	}
	if runID, afterSeq, ok := cursor.Unfinished(); ok {
		reopen.ResumeRunId, reopen.AfterSeq = runID, afterSeq
	}
	return reopen
}
