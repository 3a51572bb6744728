package dev.stepstream.client;

import dev.stepstream.v1.OpenSession;
import dev.stepstream.v1.RunEvent;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * The last seq delivered of each run: drops events seen already, so a stream reopened from it
 * yields every event once, in order.
 */
public final class Cursor {
  private final Map<String, Long> seq = new LinkedHashMap<>();
  private final Set<String> ended = new HashSet<>();

  /** The last seq delivered of a run (0: none). */
  public long seen(String runId) {
    return seq.getOrDefault(runId, 0L);
  }

  /** Records that a run's events up to {@code lastSeq} were delivered elsewhere. */
  public void setSeen(String runId, long lastSeq) {
    seq.put(runId, lastSeq);
  }

  public boolean hasEnded(String runId) {
    return ended.contains(runId);
  }

  /** The events not delivered before, now recorded as delivered. */
  public List<RunEvent> take(Iterable<RunEvent> events) {
    List<RunEvent> fresh = new ArrayList<>();
    for (RunEvent event : events) {
      String runId = event.getRunId();
      if (ended.contains(runId) || Long.compareUnsigned(event.getSeq(), seen(runId)) <= 0) {
        continue;
      }
      seq.remove(runId); // re-insert: the run seen last comes last
      seq.put(runId, event.getSeq());
      if (Events.isTerminal(event)) {
        ended.add(runId);
      }
      fresh.add(event);
    }
    return fresh;
  }

  /**
   * The OpenSession that continues a broken session stream: the same options on the session it
   * opened, with the latest unfinished run's events after the last seq seen.
   */
  public OpenSession reopen(OpenSession open, String sessionId) {
    OpenSession.Builder reopen =
        OpenSession.newBuilder()
            .setSessionId(sessionId)
            .addAllEventKinds(open.getEventKindsList())
            .setSubgraphs(open.getSubgraphs());
    String unfinished = null;
    for (String runId : seq.keySet()) {
      if (!ended.contains(runId)) {
        unfinished = runId;
      }
    }
    if (unfinished != null) {
      reopen.setResumeRunId(unfinished).setAfterSeq(seen(unfinished));
    }
    return reopen.build();
  }
}
