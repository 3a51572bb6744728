package dev.stepstream.examples;

import com.fasterxml.jackson.databind.JsonNode;
import dev.stepstream.client.Json;
import dev.stepstream.v1.Assistant;
import dev.stepstream.v1.AssistantServiceGrpc;
import dev.stepstream.v1.CreateAssistantRequest;
import dev.stepstream.v1.GetGraphRequest;
import dev.stepstream.v1.Graph;
import dev.stepstream.v1.GraphServiceGrpc;
import dev.stepstream.v1.Run;
import dev.stepstream.v1.RunServiceGrpc;
import dev.stepstream.v1.RunStatus;
import dev.stepstream.v1.StartRunRequest;
import dev.stepstream.v1.WaitRunRequest;
import io.grpc.ManagedChannel;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * {@code ResearchExample assistant ADDRESS}: an assistant and a per-run context, on the test
 * graphs' "context" graph (its nodes read the context through LangGraph's Runtime).
 *
 * <p>Reads the graph's context schema and default assistant, creates an assistant of it with saved
 * configurable values and context, and runs as that assistant and as the graph's default, each with
 * a context of its own. Prints schema, default, assistant, assistant_run and default_run lines.
 */
final class AssistantExample {
  private static final String GRAPH_ID = "context";

  private AssistantExample() {}

  static void run(ManagedChannel channel) {
    Graph graph =
        GraphServiceGrpc.newBlockingStub(channel)
            .getGraph(GetGraphRequest.newBuilder().setGraphId(GRAPH_ID).build())
            .getGraph();
    System.out.println("schema " + Json.decode(graph.getContextSchemaJson()).path("title").asText());
    System.out.println("default " + graph.getDefaultAssistantId());

    CreateAssistantRequest create =
        CreateAssistantRequest.newBuilder()
            .setGraphId(GRAPH_ID)
            .setName("java example")
            .setConfigJson(Json.encode(Map.of("model", "java-model")))
            .setContextJson(Json.encode(Map.of("user", "java")))
            .setMetadataJson(Json.encode(Map.of("client", "java")))
            .build();
    Assistant saved = AssistantServiceGrpc.newBlockingStub(channel).createAssistant(create).getAssistant();
    System.out.println("assistant " + saved.getAssistantId() + " " + saved.getVersion());

    var runs = RunServiceGrpc.newBlockingStub(channel);
    // The run's own context goes over the assistant's, key by key.
    Run run =
        runAndWait(
            runs,
            StartRunRequest.newBuilder()
                .setAssistantId(saved.getAssistantId())
                .setInputJson("{}")
                .setContextJson(Json.encode(Map.of("tone", "loud")))
                .build());
    JsonNode values = Json.decode(run.getValuesJson());
    System.out.println(
        "assistant_run " + run.getRunId() + " " + seen(values) + " " + values.path("model").asText());

    // A graph's id is accepted wherever an assistant id is: its default assistant.
    run =
        runAndWait(
            runs,
            StartRunRequest.newBuilder()
                .setAssistantId(GRAPH_ID)
                .setInputJson("{}")
                .setContextJson(Json.encode(Map.of("user", "java-default", "limit", 1)))
                .build());
    System.out.println(
        "default_run " + run.getRunId() + " " + run.getAssistantId() + " " + seen(Json.decode(run.getValuesJson())));
  }

  private static String seen(JsonNode values) {
    List<String> seen = new ArrayList<>();
    values.path("seen").forEach(node -> seen.add(node.asText()));
    return String.join(",", seen);
  }

  private static Run runAndWait(RunServiceGrpc.RunServiceBlockingStub runs, StartRunRequest request) {
    String runId = runs.startRun(request).getRun().getRunId();
    Run run =
        runs.waitRun(WaitRunRequest.newBuilder().setRunId(runId).setTimeoutSeconds(60).build()).getRun();
    if (run.getStatus() != RunStatus.RUN_STATUS_SUCCEEDED) {
      throw new IllegalStateException(
          "run " + runId + " ended " + run.getStatus() + ": " + run.getErrorMessage());
    }
    return run;
  }
}
