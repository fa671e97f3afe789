//! Workspace-level interop tests live in `tests/`: real third-party clients (the `ibapi` crate)
//! against `ibconn-sim` over loopback TCP. This library is intentionally empty.
