package dev.stepstream.examples;

import com.google.protobuf.Timestamp;
import dev.stepstream.client.Json;
import dev.stepstream.v1.CreateCronRequest;
import dev.stepstream.v1.Cron;
import dev.stepstream.v1.CronFire;
import dev.stepstream.v1.CronFireOutcome;
import dev.stepstream.v1.CronServiceGrpc;
import dev.stepstream.v1.CronSpec;
import dev.stepstream.v1.DeleteCronRequest;
import dev.stepstream.v1.GetCronRequest;
import dev.stepstream.v1.ListCronFiresRequest;
import dev.stepstream.v1.ListCronsRequest;
import dev.stepstream.v1.Run;
import dev.stepstream.v1.RunOptions;
import dev.stepstream.v1.RunServiceGrpc;
import dev.stepstream.v1.WaitRunRequest;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.time.Duration;
import java.time.Instant;
import java.util.Map;

/**
 * {@code ResearchExample crons ADDRESS}: a cron on the test graphs' "linear" graph every 2 s (a
 * leading seconds field), listed with its next fire time; one fire and its run; then the cron
 * deleted. Prints cron, listed, fire, ran, deleted and gone lines.
 */
final class CronExample {
  private static final Duration FIRE_TIMEOUT = Duration.ofSeconds(60);

  private CronExample() {}

  static void run(ManagedChannel channel) throws InterruptedException {
    var crons = CronServiceGrpc.newBlockingStub(channel);
    CronSpec spec =
        CronSpec.newBuilder()
            .setCron("*/2 * * * * *")
            .setGraphId("linear")
            .setInputJson(Json.encode(Map.of("x", 40)))
            .setOptions(RunOptions.newBuilder().setMetadataJson(Json.encode(Map.of("client", "java"))))
            .build();
    Cron cron = crons.createCron(CreateCronRequest.newBuilder().setSpec(spec).build()).getCron();
    String cronId = cron.getCronId();
    System.out.println("cron " + cronId + " " + nextFire(cron));

    for (Cron listed : crons.listCrons(ListCronsRequest.newBuilder().setPageSize(100).build()).getCronsList()) {
      if (listed.getCronId().equals(cronId)) {
        System.out.println("listed " + cronId + " " + nextFire(listed));
      }
    }

    CronFire fire = firstRun(crons, cronId);
    System.out.println("fire " + cronId + " " + fire.getRunId() + " " + instant(fire.getDueAt()));
    Run run =
        RunServiceGrpc.newBlockingStub(channel)
            .waitRun(WaitRunRequest.newBuilder().setRunId(fire.getRunId()).setTimeoutSeconds(60).build())
            .getRun();
    int x = Json.decode(run.getValuesJson()).path("x").asInt();
    System.out.println("ran " + run.getRunId() + " " + run.getStatus() + " " + x);

    crons.deleteCron(DeleteCronRequest.newBuilder().setCronId(cronId).build());
    System.out.println("deleted " + cronId);
    try {
      crons.getCron(GetCronRequest.newBuilder().setCronId(cronId).build());
      throw new IllegalStateException("cron " + cronId + " is still there after its deletion");
    } catch (StatusRuntimeException e) {
      if (e.getStatus().getCode() != Status.Code.NOT_FOUND) {
        throw e;
      }
    }
    System.out.println("gone " + cronId);
  }

  /** Polls the cron's fire records (one per due time) until one has started a run. */
  private static CronFire firstRun(CronServiceGrpc.CronServiceBlockingStub crons, String cronId)
      throws InterruptedException {
    Instant deadline = Instant.now().plus(FIRE_TIMEOUT);
    ListCronFiresRequest request = ListCronFiresRequest.newBuilder().setCronId(cronId).build();
    while (Instant.now().isBefore(deadline)) {
      for (CronFire fire : crons.listCronFires(request).getFiresList()) {
        if (fire.getOutcome() == CronFireOutcome.CRON_FIRE_OUTCOME_RAN) {
          return fire;
        }
      }
      Thread.sleep(200);
    }
    throw new IllegalStateException("cron " + cronId + " did not start a run within " + FIRE_TIMEOUT);
  }

  private static String nextFire(Cron cron) {
    return cron.getNextFireTimesCount() == 0 ? "none" : instant(cron.getNextFireTimes(0));
  }

  private static String instant(Timestamp stamp) {
    return Instant.ofEpochSecond(stamp.getSeconds(), stamp.getNanos()).toString();
  }
}
