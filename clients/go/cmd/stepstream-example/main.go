// Command stepstream-example calls a stepstream server from Go:
//
//	stepstream-example research ADDRESS          # the research assistant, start to answer
//	stepstream-example join ADDRESS RUN_ID [SEQ] # a run's events after SEQ, reconnecting
//	stepstream-example assistant ADDRESS         # an assistant and a context (tests/graphs "context")
//	stepstream-example crons ADDRESS             # a cron every 2 s (tests/graphs "linear"), one fire, deleted
//
// research lists the graphs, starts a run and prints its events as they
// arrive, then opens a bidirectional session, starts the research assistant
// on an ambiguous question, answers its clarification interrupt and prints
// the final answer. Every line it prints starts with what it reports:
// graph, started, event, answer, session, interrupt, resumed.
//
// assistant reads the "context" graph's context schema and default assistant,
// creates an assistant of it with saved configurable values and context, and
// runs as that assistant and as the graph's default, each with a context of
// its own; it prints schema, default, assistant, assistant_run and default_run.
//
// crons (crons.go) creates a cron firing every 2 s, lists it with its next
// fire time, waits for a fire and its run, then deletes the cron and checks it
// is gone; it prints cron, listed, fire, ran, deleted and gone.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/stepstream/stepstream/clients/go/stepstream"
	pb "github.com/stepstream/stepstream/clients/go/stepstreamv1"
)

const (
	graphID        = "research_assistant"
	clearQuestion  = "graph neural networks for chemistry"
	vagueQuestion  = "transformers"
	clarifiedQuery = "transformers in machine learning"
)

var modes = map[string]bool{"research": true, "join": true, "assistant": true, "crons": true}

func main() {
	if len(os.Args) < 3 || !modes[os.Args[1]] {
		fmt.Fprintln(os.Stderr, "usage: stepstream-example research ADDRESS | join ADDRESS RUN_ID [AFTER_SEQ] | assistant ADDRESS | crons ADDRESS")
		os.Exit(2)
	}
	conn, err := grpc.NewClient(os.Args[2], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fail(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	switch os.Args[1] {
	case "join":
		err = join(ctx, conn, os.Args[3:])
	case "assistant":
		err = assistant(ctx, conn)
	case "crons":
		err = crons(ctx, conn)
	default:
		err = research(ctx, conn)
	}
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "error:", err)
	os.Exit(1)
}

func research(ctx context.Context, conn *grpc.ClientConn) error {
	graphs, err := pb.NewGraphServiceClient(conn).ListGraphs(ctx, &pb.ListGraphsRequest{})
	if err != nil {
		return err
	}
	for _, graph := range graphs.GetGraphs() {
		fmt.Println("graph", graph.GetGraphId(), strings.Join(graph.GetNodes(), ","))
	}
	if err := runInBackground(ctx, pb.NewRunServiceClient(conn)); err != nil {
		return err
	}
	return converse(ctx, pb.NewSessionServiceClient(conn))
}

// runInBackground starts a run, then follows its events (reconnecting if the stream breaks).
func runInBackground(ctx context.Context, runs pb.RunServiceClient) error {
	input := stepstream.MustJSON(map[string]any{"query": clearQuestion})
	started, err := runs.StartRun(ctx, &pb.StartRunRequest{GraphId: graphID, InputJson: input})
	if err != nil {
		return err
	}
	run := started.GetRun()
	fmt.Println("started", run.GetRunId(), run.GetSessionId())
	return follow(ctx, runs, &pb.JoinRunRequest{RunId: run.GetRunId()})
}

func follow(ctx context.Context, runs pb.RunServiceClient, request *pb.JoinRunRequest) error {
	for event, err := range stepstream.FollowRun(ctx, runs, request, stepstream.FollowOptions{}) {
		if err != nil {
			return err
		}
		if err := printEvent(event); err != nil {
			return err
		}
	}
	return nil
}

func join(ctx context.Context, conn *grpc.ClientConn, args []string) error {
	if len(args) < 1 {
		return errors.New("join needs a RUN_ID")
	}
	request := &pb.JoinRunRequest{RunId: args[0]}
	if len(args) > 1 {
		seq, err := strconv.ParseUint(args[1], 10, 64)
		if err != nil {
			return fmt.Errorf("AFTER_SEQ: %w", err)
		}
		request.AfterSeq = seq
	}
	return follow(ctx, pb.NewRunServiceClient(conn), request)
}

// printEvent prints one line per event, and the answer once a run reaches the end.
func printEvent(event *pb.RunEvent) error {
	detail := ""
	switch kind := event.GetKind().(type) {
	case *pb.RunEvent_TaskStarted:
		detail = kind.TaskStarted.GetTask().GetNode()
	case *pb.RunEvent_TaskFinished:
		detail = kind.TaskFinished.GetTask().GetNode()
	case *pb.RunEvent_SuperstepStarted:
		detail = strconv.Itoa(int(kind.SuperstepStarted.GetStep()))
	}
	fmt.Println(strings.TrimSpace(fmt.Sprintf("event %s %d %s %s", event.GetRunId(), event.GetSeq(), stepstream.Kind(event), detail)))
	if finished := event.GetRunFinished(); finished != nil && len(finished.GetInterrupts()) == 0 {
		values, err := stepstream.DecodeJSON[struct{ Answer string }](finished.GetValuesJson())
		if err != nil {
			return err
		}
		fmt.Println("answer", event.GetRunId(), stepstream.MustJSON(values.Answer))
	}
	return nil
}

// converse holds one bidirectional session: ask, answer the clarification, print the answer.
func converse(ctx context.Context, sessions pb.SessionServiceClient) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := sessions.SessionStream(ctx)
	if err != nil {
		return err
	}
	session := &sessionStream{stream: stream, ended: map[string]*pb.RunEvent{}}
	opened, err := session.do(&pb.SessionStreamRequest{Action: &pb.SessionStreamRequest_Open{
		// Batched events: one response per commit of a run instead of one per event.
		Open: &pb.OpenSession{GraphId: graphID, BatchEvents: true},
	}})
	if err != nil {
		return err
	}
	fmt.Println("session", opened.GetSession().GetSessionId())

	input := stepstream.MustJSON(map[string]any{"query": vagueQuestion})
	answer, err := session.do(&pb.SessionStreamRequest{Action: &pb.SessionStreamRequest_StartRun{
		StartRun: &pb.StartRun{InputJson: input},
	}})
	if err != nil {
		return err
	}
	last, err := session.events(answer.GetRun().GetRunId())
	if err != nil {
		return err
	}
	interrupts := last.GetRunFinished().GetInterrupts()
	if len(interrupts) != 1 {
		return fmt.Errorf("expected one clarification interrupt, the run ended with %s", stepstream.Kind(last))
	}
	question, err := stepstream.DecodeJSON[struct{ Question string }](interrupts[0].GetValueJson())
	if err != nil {
		return err
	}
	fmt.Println("interrupt", last.GetRunId(), stepstream.MustJSON(question.Question))

	// The resume value is any JSON value: here the sharpened question as a JSON string.
	answer, err = session.do(&pb.SessionStreamRequest{Action: &pb.SessionStreamRequest_Resume{
		Resume: &pb.Command{ResumeJson: stepstream.MustJSON(clarifiedQuery)},
	}})
	if err != nil {
		return err
	}
	fmt.Println("resumed", answer.GetRun().GetRunId())
	if _, err := session.events(answer.GetRun().GetRunId()); err != nil {
		return err
	}
	return stream.CloseSend()
}

// sessionStream sends one action at a time and reads until the server answers it.
type sessionStream struct {
	stream pb.SessionService_SessionStreamClient
	next   int
	ended  map[string]*pb.RunEvent // last events read while waiting for an answer
}

func (s *sessionStream) do(request *pb.SessionStreamRequest) (*pb.SessionStreamResponse, error) {
	s.next++
	request.RequestId = fmt.Sprintf("r%d", s.next)
	if err := s.stream.Send(request); err != nil {
		return nil, err
	}
	for {
		response, err := s.stream.Recv()
		if err != nil {
			return nil, err
		}
		if failure := response.GetError(); failure != nil {
			return nil, fmt.Errorf("%s: code %d: %s", request.GetRequestId(), failure.GetCode(), failure.GetMessage())
		}
		if events := stepstream.ResponseEvents(response); len(events) > 0 {
			for _, event := range events {
				if err := printEvent(event); err != nil {
					return nil, err
				}
				if stepstream.IsTerminal(event) {
					s.ended[event.GetRunId()] = event
				}
			}
			continue
		}
		if response.GetRequestId() == request.GetRequestId() {
			return response, nil
		}
	}
}

// events prints a run's events until its last one, and returns that one.
func (s *sessionStream) events(runID string) (*pb.RunEvent, error) {
	if last, ok := s.ended[runID]; ok {
		return last, nil
	}
	for {
		response, err := s.stream.Recv()
		if err == io.EOF {
			return nil, fmt.Errorf("the session stream ended before run %s did", runID)
		}
		if err != nil {
			return nil, err
		}
		for _, event := range stepstream.ResponseEvents(response) {
			if event.GetRunId() != runID {
				continue
			}
			if err := printEvent(event); err != nil {
				return nil, err
			}
			if stepstream.IsTerminal(event) {
				return event, nil
			}
		}
	}
}

// assistant runs the "context" graph as an assistant with saved settings, and as its default.
func assistant(ctx context.Context, conn *grpc.ClientConn) error {
	graph, err := pb.NewGraphServiceClient(conn).GetGraph(ctx, &pb.GetGraphRequest{GraphId: "context"})
	if err != nil {
		return err
	}
	schema, err := stepstream.DecodeJSON[struct{ Title string }](graph.GetGraph().GetContextSchemaJson())
	if err != nil {
		return err
	}
	fmt.Println("schema", schema.Title)
	fmt.Println("default", graph.GetGraph().GetDefaultAssistantId())

	assistants := pb.NewAssistantServiceClient(conn)
	created, err := assistants.CreateAssistant(ctx, &pb.CreateAssistantRequest{
		GraphId:      "context",
		Name:         "go example",
		ConfigJson:   stepstream.MustJSON(map[string]any{"model": "go-model"}),
		ContextJson:  stepstream.MustJSON(map[string]any{"user": "go"}),
		MetadataJson: stepstream.MustJSON(map[string]any{"client": "go"}),
	})
	if err != nil {
		return err
	}
	saved := created.GetAssistant()
	fmt.Println("assistant", saved.GetAssistantId(), saved.GetVersion())

	runs := pb.NewRunServiceClient(conn)
	// The run's own context goes over the assistant's, key by key.
	run, err := runAndWait(ctx, runs, &pb.StartRunRequest{
		AssistantId: saved.GetAssistantId(),
		InputJson:   "{}",
		ContextJson: stepstream.MustJSON(map[string]any{"tone": "loud"}),
	})
	if err != nil {
		return err
	}
	values, err := stepstream.DecodeJSON[struct {
		Seen  []string
		Model string
	}](run.GetValuesJson())
	if err != nil {
		return err
	}
	fmt.Println("assistant_run", run.GetRunId(), strings.Join(values.Seen, ","), values.Model)

	// A graph's id is accepted wherever an assistant id is: its default assistant.
	run, err = runAndWait(ctx, runs, &pb.StartRunRequest{
		AssistantId: "context",
		InputJson:   "{}",
		ContextJson: stepstream.MustJSON(map[string]any{"user": "go-default", "limit": 1}),
	})
	if err != nil {
		return err
	}
	values, err = stepstream.DecodeJSON[struct {
		Seen  []string
		Model string
	}](run.GetValuesJson())
	if err != nil {
		return err
	}
	fmt.Println("default_run", run.GetRunId(), run.GetAssistantId(), strings.Join(values.Seen, ","))
	return nil
}

func runAndWait(ctx context.Context, runs pb.RunServiceClient, request *pb.StartRunRequest) (*pb.Run, error) {
	started, err := runs.StartRun(ctx, request)
	if err != nil {
		return nil, err
	}
	waited, err := runs.WaitRun(ctx, &pb.WaitRunRequest{RunId: started.GetRun().GetRunId(), TimeoutSeconds: 60})
	if err != nil {
		return nil, err
	}
	if waited.GetRun().GetStatus() != pb.RunStatus_RUN_STATUS_SUCCEEDED {
		return nil, fmt.Errorf("run %s ended %s: %s", waited.GetRun().GetRunId(), waited.GetRun().GetStatus(), waited.GetRun().GetErrorMessage())
	}
	return waited.GetRun(), nil
}
