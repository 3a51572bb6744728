package dev.stepstream.client;

import dev.stepstream.v1.RunEvent;
import dev.stepstream.v1.SessionStreamResponse;
import java.util.List;
import java.util.Locale;

/** Event kinds by their proto field names. */
public final class Events {
  private Events() {}

  /** The name of the event's oneof field, e.g. "task_finished" ("" for a kind newer than these stubs). */
  public static String kind(RunEvent event) {
    RunEvent.KindCase kind = event.getKindCase();
    return kind == RunEvent.KindCase.KIND_NOT_SET ? "" : kind.name().toLowerCase(Locale.ROOT);
  }

  /** True for a run's last event: finished, failed or cancelled. */
  public static boolean isTerminal(RunEvent event) {
    return switch (event.getKindCase()) {
      case RUN_FINISHED, RUN_FAILED, RUN_CANCELLED -> true;
      default -> false;
    };
  }

  /**
   * The run events a session stream response carries, in order: one for {@code event}, the whole
   * batch for {@code events} (streams opened with {@code batch_events}), none for any other kind.
   */
  public static List<RunEvent> of(SessionStreamResponse response) {
    return switch (response.getKindCase()) {
      case EVENT -> List.of(response.getEvent());
      case EVENTS -> response.getEvents().getEventsList();
      default -> List.of();
    };
  }
}
