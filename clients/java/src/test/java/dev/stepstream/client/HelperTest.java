package dev.stepstream.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.stepstream.v1.OpenSession;
import dev.stepstream.v1.RunEvent;
import dev.stepstream.v1.Run;
import dev.stepstream.v1.RunEventBatch;
import dev.stepstream.v1.RunFinished;
import dev.stepstream.v1.SessionStreamResponse;
import dev.stepstream.v1.SuperstepFinished;
import io.grpc.Context;
import io.grpc.Status;
import java.time.Duration;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import org.junit.jupiter.api.Test;

/**
 * The helper's pure parts, and how RunFollower ends a stream; the stubs and RunFollower run against a
 * live server in tests/clients.
 */
class HelperTest {
  private static RunEvent event(String runId, long seq, boolean finished) {
    RunEvent.Builder event = RunEvent.newBuilder().setRunId(runId).setSeq(seq);
    return finished
        ? event.setRunFinished(RunFinished.newBuilder().setValuesJson("{}")).build()
        : event.setSuperstepFinished(SuperstepFinished.newBuilder().setStep((int) seq)).build();
  }

  @Test
  void jsonPayloads() {
    assertEquals("{\"query\":\"x\"}", Json.encode(Map.of("query", "x")));
    assertEquals("null", Json.encode(null));
    assertEquals("", Json.encodeOptional(null));
    assertEquals(42, Json.decode("{\"a\": [42]}").path("a").path(0).asInt());
    assertTrue(Json.decode("").isMissingNode());
    assertNull(Json.decode("", Map.class));
    assertThrows(IllegalArgumentException.class, () -> Json.decode("{x"));
  }

  @Test
  void kindsAreTheProtoFieldNames() {
    assertEquals("superstep_finished", Events.kind(event("r", 1, false)));
    assertEquals("run_finished", Events.kind(event("r", 2, true)));
    assertEquals("", Events.kind(RunEvent.getDefaultInstance()));
    assertFalse(Events.isTerminal(event("r", 1, false)));
    assertTrue(Events.isTerminal(event("r", 2, true)));
  }

  @Test
  void responsesCarryTheirEventsSingleOrBatchedInOrder() {
    RunEvent first = event("a", 1, false);
    RunEvent last = event("a", 2, true);
    assertEquals(List.of(first), Events.of(SessionStreamResponse.newBuilder().setEvent(first).build()));
    SessionStreamResponse batch =
        SessionStreamResponse.newBuilder()
            .setEvents(RunEventBatch.newBuilder().addEvents(first).addEvents(last))
            .build();
    assertEquals(List.of(first, last), Events.of(batch));
    assertEquals(List.of(), Events.of(SessionStreamResponse.newBuilder().setEvents(RunEventBatch.getDefaultInstance()).build()));
    assertEquals(List.of(), Events.of(SessionStreamResponse.newBuilder().setRun(Run.newBuilder().setRunId("a")).build()));
    assertEquals(List.of(), Events.of(SessionStreamResponse.getDefaultInstance()));
  }

  @Test
  void cursorDropsDeliveredEventsAndReopensTheUnfinishedRun() {
    Cursor cursor = new Cursor();
    cursor.setSeen("a", 2);
    List<RunEvent> fresh =
        cursor.take(
            List.of(event("a", 1, false), event("a", 2, false), event("a", 3, false), event("b", 1, false), event("a", 3, false)));
    assertEquals(List.of("a3", "b1"), fresh.stream().map(e -> e.getRunId() + e.getSeq()).toList());
    cursor.take(List.of(event("b", 2, true), event("b", 3, false)));
    assertTrue(cursor.hasEnded("b"));
    assertEquals(2, cursor.seen("b"));
    OpenSession reopen = cursor.reopen(OpenSession.newBuilder().setGraphId("g").setSubgraphs(true).build(), "s1");
    assertEquals("s1", reopen.getSessionId());
    assertEquals("", reopen.getGraphId());
    assertTrue(reopen.getSubgraphs());
    assertEquals("a", reopen.getResumeRunId());
    assertEquals(3, reopen.getAfterSeq());
  }

  /**
   * What a stream has left after the run's last event: one response, then the server's close, or
   * with stayOpen nothing more until the call is cancelled (as grpc's blocking iterator, which
   * then throws CANCELLED).
   */
  private static final class Rest implements Iterator<String> {
    private final Context.CancellableContext call;
    private final boolean stayOpen;
    private int left = 1;
    boolean closed; // the close was read
    boolean cancelledFirst; // the call was cancelled before its close was read

    Rest(Context.CancellableContext call, boolean stayOpen) {
      this.call = call;
      this.stayOpen = stayOpen;
    }

    @Override
    public boolean hasNext() {
      if (left > 0) {
        return true;
      }
      if (!stayOpen) {
        closed = true;
        cancelledFirst = call.isCancelled();
        return false;
      }
      CountDownLatch cancelled = new CountDownLatch(1);
      call.addListener(context -> cancelled.countDown(), Runnable::run);
      try {
        cancelled.await();
      } catch (InterruptedException e) {
        throw new AssertionError(e);
      }
      throw Status.CANCELLED.asRuntimeException();
    }

    @Override
    public String next() {
      left--;
      return "response";
    }
  }

  @Test
  void aStreamIsReadToTheServersCloseWithoutCancelling() {
    Context.CancellableContext call = Context.current().withCancellation();
    Rest rest = new Rest(call, false);
    RunFollower.closedByServer(rest, call);
    assertTrue(rest.closed, "the stream was not read to its close");
    assertFalse(rest.cancelledFirst || call.isCancelled(), "the call was cancelled");
    call.cancel(null);
  }

  @Test
  void aStreamLeftOpenIsCancelledAfterTheWait() {
    Context.CancellableContext call = Context.current().withCancellation();
    Rest rest = new Rest(call, true);
    long start = System.nanoTime();
    RunFollower.closedByServer(rest, call);
    Duration waited = Duration.ofNanos(System.nanoTime() - start);
    assertTrue(call.isCancelled(), "the call left open was not cancelled");
    assertTrue(
        waited.compareTo(RunFollower.CLOSE_WAIT) >= 0 && waited.compareTo(RunFollower.CLOSE_WAIT.multipliedBy(2)) < 0,
        "gave up on the close after " + waited);
  }
}
