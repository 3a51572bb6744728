package dev.stepstream.client;

import dev.stepstream.v1.GetRunRequest;
import dev.stepstream.v1.JoinRunRequest;
import dev.stepstream.v1.JoinRunResponse;
import dev.stepstream.v1.Run;
import dev.stepstream.v1.RunEvent;
import dev.stepstream.v1.RunServiceGrpc;
import dev.stepstream.v1.RunStatus;
import io.grpc.Context;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.time.Duration;
import java.util.EnumSet;
import java.util.Iterator;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;

/**
 * A run's events through JoinRun, rejoined from the last seq delivered when the stream breaks
 * (UNAVAILABLE, or a clean end before the run has ended, as a draining replica does), so every
 * event arrives once, in order.
 *
 * <pre>{@code
 * new RunFollower(RunServiceGrpc.newBlockingStub(channel))
 *     .follow(JoinRunRequest.newBuilder().setRunId(id).build(), event -> System.out.println(event.getSeq()));
 * }</pre>
 */
public final class RunFollower {
  private static final Set<RunStatus> ENDED =
      EnumSet.of(
          RunStatus.RUN_STATUS_SUCCEEDED,
          RunStatus.RUN_STATUS_INTERRUPTED,
          RunStatus.RUN_STATUS_FAILED,
          RunStatus.RUN_STATUS_CANCELLED);

  /** How long to wait for the server to close a stream whose run's last event has come. */
  static final Duration CLOSE_WAIT = Duration.ofSeconds(1);

  private final RunServiceGrpc.RunServiceBlockingStub runs;
  private final Duration reconnectTimeout;
  private final Duration firstDelay;
  private final Duration maxDelay;

  /** Gives up after 30 s of reconnecting without an event; pauses 50 ms doubling up to 2 s. */
  public RunFollower(RunServiceGrpc.RunServiceBlockingStub runs) {
    this(runs, Duration.ofSeconds(30), Duration.ofMillis(50), Duration.ofSeconds(2));
  }

  public RunFollower(
      RunServiceGrpc.RunServiceBlockingStub runs,
      Duration reconnectTimeout,
      Duration firstDelay,
      Duration maxDelay) {
    this.runs = runs;
    this.reconnectTimeout = reconnectTimeout;
    this.firstDelay = firstDelay;
    this.maxDelay = maxDelay;
  }

  /**
   * Delivers the run's events after {@code request.getAfterSeq()} until its last one.
   *
   * @throws StatusRuntimeException any error but UNAVAILABLE, or UNAVAILABLE once reconnecting
   *     has taken longer than the reconnect timeout
   */
  public void follow(JoinRunRequest request, Consumer<RunEvent> onEvent) throws InterruptedException {
    String runId = request.getRunId();
    Cursor cursor = new Cursor();
    cursor.setSeen(runId, request.getAfterSeq());
    long brokenSince = -1;
    long delay = firstDelay.toMillis();
    while (true) {
      long before = cursor.seen(runId);
      JoinRunRequest join = request.toBuilder().setAfterSeq(before).build();
      StatusRuntimeException failure;
      Context.CancellableContext call = Context.current().withCancellation();
      try {
        call.run(() -> readOnce(join, cursor, onEvent, call));
        if (cursor.hasEnded(runId) || runIsOver(runId, cursor.seen(runId))) {
          return;
        }
        failure =
            Status.UNAVAILABLE
                .withDescription("the event stream of run " + runId + " ended before the run")
                .asRuntimeException();
      } catch (StatusRuntimeException e) {
        failure = e;
      } finally {
        call.cancel(null);
      }
      if (failure.getStatus().getCode() != Status.Code.UNAVAILABLE) {
        throw failure;
      }
      long now = System.nanoTime();
      if (cursor.seen(runId) != before) { // events came: the stream worked until it broke
        brokenSince = -1;
        delay = firstDelay.toMillis();
      }
      if (brokenSince < 0) {
        brokenSince = now;
      }
      if (Duration.ofNanos(now - brokenSince).compareTo(reconnectTimeout) >= 0) {
        throw failure;
      }
      Thread.sleep(delay);
      delay = Math.min(delay * 2, maxDelay.toMillis());
    }
  }

  /** Reads one JoinRun stream, started in {@code call}, until it ends or the run's last event. */
  private void readOnce(
      JoinRunRequest join, Cursor cursor, Consumer<RunEvent> onEvent, Context.CancellableContext call) {
    Iterator<JoinRunResponse> responses = runs.joinRun(join);
    while (responses.hasNext()) {
      List<RunEvent> events = cursor.take(responses.next().getEventsList());
      boolean ended = cursor.hasEnded(join.getRunId());
      if (ended) {
        closedByServer(responses, call);
      }
      events.forEach(onEvent);
      if (ended) {
        return;
      }
    }
  }

  /**
   * Reads a stream to its end after the run's last event, before that event is delivered. The
   * server closes the stream right after that event; cancelling the call first instead costs both
   * sides a reset HTTP/2 stream and the server a cancelled handler. A close that has not come
   * within {@link #CLOSE_WAIT} is not waited for: cancelling {@code call} ends the stream.
   */
  static void closedByServer(Iterator<?> responses, Context.CancellableContext call) {
    CompletableFuture<Void> late =
        CompletableFuture.runAsync(
            () -> call.cancel(null),
            CompletableFuture.delayedExecutor(CLOSE_WAIT.toMillis(), TimeUnit.MILLISECONDS));
    try {
      while (responses.hasNext()) {
        responses.next();
      }
    } catch (StatusRuntimeException e) {
      // the events are all in: an error now, or the late cancel, changes nothing
    } finally {
      late.cancel(false);
    }
  }

  private boolean runIsOver(String runId, long seen) {
    try {
      Run run = runs.getRun(GetRunRequest.newBuilder().setRunId(runId).build()).getRun();
      return ENDED.contains(run.getStatus()) && Long.compareUnsigned(run.getLastSeq(), seen) <= 0;
    } catch (StatusRuntimeException e) {
      return false; // no answer now: keep trying to rejoin
    }
  }
}
