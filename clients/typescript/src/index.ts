// stepstream from Node.js: the generated stubs (one namespace per proto file) plus a thin helper.
export * from "./events";
export * from "./follow";
export * from "./json";
export * as assistants from "./gen/stepstream/v1/assistants";
export * as common from "./gen/stepstream/v1/common";
export * as crons from "./gen/stepstream/v1/crons";
export * as events from "./gen/stepstream/v1/events";
export * as graphs from "./gen/stepstream/v1/graphs";
export * as inspector from "./gen/stepstream/v1/inspector";
export * as runs from "./gen/stepstream/v1/runs";
export * as sessions from "./gen/stepstream/v1/sessions";
