package dev.stepstream.client;

import dev.stepstream.v1.RunEvent;
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
}
