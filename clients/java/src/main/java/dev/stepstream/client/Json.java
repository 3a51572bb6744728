package dev.stepstream.client;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.MissingNode;

/** The contract's {@code _json} fields: one JSON value as UTF-8 text, "" meaning absent. */
public final class Json {
  private static final ObjectMapper MAPPER = new ObjectMapper();

  private Json() {}

  /** Encodes a payload that must be present: {@code null} becomes "null". */
  public static String encode(Object value) {
    try {
      return MAPPER.writeValueAsString(value);
    } catch (JsonProcessingException e) {
      throw new IllegalArgumentException("stepstream: payload is not JSON: " + e.getOriginalMessage(), e);
    }
  }

  /** Encodes an optional payload: {@code null} becomes "", which the contract reads as absent. */
  public static String encodeOptional(Object value) {
    return value == null ? "" : encode(value);
  }

  /** Decodes a {@code _json} field as a tree; "" (absent) gives a MissingNode. */
  public static JsonNode decode(String text) {
    if (text.isEmpty()) {
      return MissingNode.getInstance();
    }
    try {
      return MAPPER.readTree(text);
    } catch (JsonProcessingException e) {
      throw new IllegalArgumentException("stepstream: malformed JSON: " + e.getOriginalMessage(), e);
    }
  }

  /** Decodes a {@code _json} field into a type; "" (absent) gives {@code null}. */
  public static <T> T decode(String text, Class<T> type) {
    if (text.isEmpty()) {
      return null;
    }
    try {
      return MAPPER.readValue(text, type);
    } catch (JsonProcessingException e) {
      throw new IllegalArgumentException("stepstream: malformed JSON: " + e.getOriginalMessage(), e);
    }
  }
}
