// The shapes the desktop backend (Rust, crates/core + crates/client + src-tauri) sends
// to the UI are generated from the Rust types into ./generated.ts (`make types`; a
// cargo test fails when it is stale). This file re-exports them under the names the
// UI uses, and holds the few types that exist only on the UI side.

import type {
  BundleView, ConsoleError, ConsoleErrorCode, GrantView, IncidentView, RequestView,
} from './generated';

export type * from './generated';

export type Bundle = BundleView;
export type Request = RequestView;
export type Grant = GrantView;
export type Incident = IncidentView;

/** What the UI hands `requestBundle` (the Tauri command takes these as arguments). */
export interface NewRequest {
  bundle: string;
  duration_secs?: number;
  justification?: string;
  ticket?: string;
  /** The open incident this request is for (its responders may request what it opens). */
  incident?: string;
}

/** Every error from a backend call: the backend's `ConsoleError`, or `error` when the
 *  call itself failed before reaching the backend (see `toBackendError`). */
export type BackendErrorCode = ConsoleErrorCode | 'error';
export type BackendError = Omit<ConsoleError, 'code'> & { code: BackendErrorCode };

/** What a link filled in on the request form (the user still reviews and sends it). */
export interface RequestPrefill {
  justification?: string;
  ticket?: string;
  incident?: string;
}
