//! End-to-end tests of the `weir` binary: a real gateway, real backends, real sockets.
//!
//! Every test builds its own world (config directory, echo backends, gateway) on free ports,
//! so they run concurrently. Each module specifies one area of behaviour.

mod ai;
mod ai_usage;
mod endpoints;
mod failures;
mod faults;
mod filters;
mod gateway_api;
mod hardening;
mod ingress;
mod lifecycle;
mod policy;
mod protocols;
mod quickstart;
mod reload;
mod rolling;
mod routing;
mod tls;
mod weights;
