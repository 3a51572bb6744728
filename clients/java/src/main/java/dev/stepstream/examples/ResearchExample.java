package dev.stepstream.examples;

import com.fasterxml.jackson.databind.JsonNode;
import dev.stepstream.client.Events;
import dev.stepstream.client.Json;
import dev.stepstream.client.RunFollower;
import dev.stepstream.v1.Command;
import dev.stepstream.v1.GraphServiceGrpc;
import dev.stepstream.v1.Graph;
import dev.stepstream.v1.Interrupt;
import dev.stepstream.v1.JoinRunRequest;
import dev.stepstream.v1.ListGraphsRequest;
import dev.stepstream.v1.OpenSession;
import dev.stepstream.v1.Run;
import dev.stepstream.v1.RunEvent;
import dev.stepstream.v1.RunServiceGrpc;
import dev.stepstream.v1.SessionServiceGrpc;
import dev.stepstream.v1.SessionStreamRequest;
import dev.stepstream.v1.SessionStreamResponse;
import dev.stepstream.v1.StartRun;
import dev.stepstream.v1.StartRunRequest;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.stub.StreamObserver;
import java.util.ArrayDeque;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

/**
 * Calls a stepstream server from Java.
 *
 * <pre>
 * ResearchExample research ADDRESS           the research assistant, start to answer
 * ResearchExample join ADDRESS RUN_ID [SEQ]  a run's events after SEQ, reconnecting
 * ResearchExample assistant ADDRESS          an assistant and a context (AssistantExample)
 * ResearchExample crons ADDRESS              a cron every 2 s, one fire, deleted (CronExample)
 * </pre>
 *
 * <p>{@code research} lists the graphs, starts a run and prints its events as they arrive, then
 * opens a bidirectional session, starts the research assistant on an ambiguous question, answers
 * its clarification interrupt and prints the final answer. Every line printed starts with what it
 * reports: graph, started, event, answer, session, interrupt, resumed.
 */
public final class ResearchExample {
  private static final String GRAPH_ID = "research_assistant";
  private static final String CLEAR_QUESTION = "graph neural networks for chemistry";
  private static final String VAGUE_QUESTION = "transformers";
  private static final String CLARIFIED_QUERY = "transformers in machine learning";

  private ResearchExample() {}

  public static void main(String[] args) throws Exception {
    if (args.length < 2 || !List.of("research", "join", "assistant", "crons").contains(args[0])) {
      System.err.println(
          "usage: ResearchExample research ADDRESS | join ADDRESS RUN_ID [AFTER_SEQ] | assistant ADDRESS"
              + " | crons ADDRESS");
      System.exit(2);
    }
    ManagedChannel channel =
        Grpc.newChannelBuilder(args[1], InsecureChannelCredentials.create()).build();
    try {
      if (args[0].equals("join")) {
        if (args.length < 3) {
          throw new IllegalArgumentException("join needs a RUN_ID");
        }
        long afterSeq = args.length > 3 ? Long.parseUnsignedLong(args[3]) : 0;
        follow(channel, JoinRunRequest.newBuilder().setRunId(args[2]).setAfterSeq(afterSeq).build());
      } else if (args[0].equals("assistant")) {
        AssistantExample.run(channel);
      } else if (args[0].equals("crons")) {
        CronExample.run(channel);
      } else {
        research(channel);
      }
    } catch (Exception e) {
      System.err.println("error: " + e);
      System.exit(1);
    } finally {
      channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
  }

  private static void research(ManagedChannel channel) throws InterruptedException {
    var graphs = GraphServiceGrpc.newBlockingStub(channel).listGraphs(ListGraphsRequest.getDefaultInstance());
    for (Graph graph : graphs.getGraphsList()) {
      System.out.println("graph " + graph.getGraphId() + " " + String.join(",", graph.getNodesList()));
    }
    runInBackground(channel);
    converse(channel);
  }

  /** Starts a run, then follows its events (reconnecting if the stream breaks). */
  private static void runInBackground(ManagedChannel channel) throws InterruptedException {
    StartRunRequest request =
        StartRunRequest.newBuilder()
            .setGraphId(GRAPH_ID)
            .setInputJson(Json.encode(Map.of("query", CLEAR_QUESTION)))
            .build();
    Run run = RunServiceGrpc.newBlockingStub(channel).startRun(request).getRun();
    System.out.println("started " + run.getRunId() + " " + run.getSessionId());
    follow(channel, JoinRunRequest.newBuilder().setRunId(run.getRunId()).build());
  }

  private static void follow(ManagedChannel channel, JoinRunRequest request) throws InterruptedException {
    new RunFollower(RunServiceGrpc.newBlockingStub(channel)).follow(request, ResearchExample::printEvent);
  }

  /** Prints one line per event, and the answer once a run reaches the end. */
  private static void printEvent(RunEvent event) {
    String detail =
        switch (event.getKindCase()) {
          case TASK_STARTED -> " " + event.getTaskStarted().getTask().getNode();
          case TASK_FINISHED -> " " + event.getTaskFinished().getTask().getNode();
          case SUPERSTEP_STARTED -> " " + event.getSuperstepStarted().getStep();
          default -> "";
        };
    System.out.println(
        "event " + event.getRunId() + " " + Long.toUnsignedString(event.getSeq()) + " " + Events.kind(event) + detail);
    if (event.hasRunFinished() && event.getRunFinished().getInterruptsCount() == 0) {
      JsonNode values = Json.decode(event.getRunFinished().getValuesJson());
      System.out.println("answer " + event.getRunId() + " " + Json.encode(values.path("answer").asText()));
    }
  }

  /** One bidirectional session: ask, answer the clarification, print the answer. */
  private static void converse(ManagedChannel channel) throws InterruptedException {
    SessionStream session = new SessionStream(SessionServiceGrpc.newStub(channel));
    try {
      SessionStreamResponse opened =
          session.send(SessionStreamRequest.newBuilder().setOpen(OpenSession.newBuilder().setGraphId(GRAPH_ID).setBatchEvents(true)));
      System.out.println("session " + opened.getSession().getSessionId());

      String input = Json.encode(Map.of("query", VAGUE_QUESTION));
      SessionStreamResponse asked =
          session.send(SessionStreamRequest.newBuilder().setStartRun(StartRun.newBuilder().setInputJson(input)));
      RunEvent last = session.events(asked.getRun().getRunId());
      List<Interrupt> interrupts = last.getRunFinished().getInterruptsList();
      if (interrupts.size() != 1) {
        throw new IllegalStateException(
            "expected one clarification interrupt, the run ended with " + Events.kind(last));
      }
      JsonNode question = Json.decode(interrupts.get(0).getValueJson());
      System.out.println("interrupt " + last.getRunId() + " " + Json.encode(question.path("question").asText()));

      // The resume value is any JSON value: here the sharpened question as a JSON string.
      Command resume = Command.newBuilder().setResumeJson(Json.encode(CLARIFIED_QUERY)).build();
      String resumed = session.send(SessionStreamRequest.newBuilder().setResume(resume)).getRun().getRunId();
      System.out.println("resumed " + resumed);
      session.events(resumed);
    } finally {
      session.close();
    }
  }

  /**
   * One action at a time on a session stream, reading until the server answers it. The session is
   * opened with batch_events: each commit's events of a run come as one response, which is much
   * cheaper than one response per event on token streams.
   */
  private static final class SessionStream {
    private static final Object END = new Object();
    private final BlockingQueue<Object> responses = new LinkedBlockingQueue<>();
    private final ArrayDeque<RunEvent> unread = new ArrayDeque<>();
    private final StreamObserver<SessionStreamRequest> requests;
    private final Map<String, RunEvent> ended = new HashMap<>();
    private int next;

    SessionStream(SessionServiceGrpc.SessionServiceStub sessions) {
      requests =
          sessions.sessionStream(
              new StreamObserver<>() {
                @Override
                public void onNext(SessionStreamResponse response) {
                  responses.add(response);
                }

                @Override
                public void onError(Throwable error) {
                  responses.add(error);
                }

                @Override
                public void onCompleted() {
                  responses.add(END);
                }
              });
    }

    /** The next event (batches are read one event at a time), or else the next other response. */
    private Object read() throws InterruptedException {
      while (unread.isEmpty()) {
        Object item = responses.take();
        if (item instanceof SessionStreamResponse response) {
          if (!response.hasEvent() && !response.hasEvents()) {
            return response;
          }
          unread.addAll(Events.of(response));
        } else {
          responses.add(item); // every later read sees the end too
          if (item instanceof Throwable error) {
            throw new IllegalStateException("the session stream failed: " + error, error);
          }
          throw new IllegalStateException("the session stream ended");
        }
      }
      return unread.poll();
    }

    SessionStreamResponse send(SessionStreamRequest.Builder request) throws InterruptedException {
      String requestId = "r" + ++next;
      requests.onNext(request.setRequestId(requestId).build());
      while (true) {
        Object item = read();
        if (item instanceof RunEvent event) {
          printEvent(event);
          if (Events.isTerminal(event)) {
            ended.put(event.getRunId(), event);
          }
          continue;
        }
        SessionStreamResponse response = (SessionStreamResponse) item;
        if (response.hasError()) {
          throw new IllegalStateException(
              requestId + ": code " + response.getError().getCode() + ": " + response.getError().getMessage());
        }
        if (response.getRequestId().equals(requestId)) {
          return response;
        }
      }
    }

    /** Prints a run's events until its last one, and returns that one. */
    RunEvent events(String runId) throws InterruptedException {
      RunEvent seen = ended.get(runId);
      if (seen != null) {
        return seen;
      }
      while (true) {
        if (!(read() instanceof RunEvent event) || !event.getRunId().equals(runId)) {
          continue;
        }
        printEvent(event);
        if (Events.isTerminal(event)) {
          return event;
        }
      }
    }

    void close() {
      requests.onCompleted();
    }
  }
}
