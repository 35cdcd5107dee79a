/**
 * s3kv-client: read an s3kv store from Node (>= 18) or a browser. `createClient` is the entry point; the push
 * protocol on its own is `s3kv-client/push`. Documented in clients/js/README.md.
 */
export { createClient } from "./client.js";
export type {
  AllDetailed, Client, ClientOptions, Detailed, Item, ItemChange, Source, SubscribeOptions,
} from "./client.js";
export { S3kvError, type ErrorKind } from "./errors.js";
export type { Fetch } from "./http.js";
export type { Status, Subscription } from "./push.js";
export { parseSnapshot, type Snapshot, type SnapshotDocument, type SnapshotItem, type SnapshotSource } from "./snapshot.js";
