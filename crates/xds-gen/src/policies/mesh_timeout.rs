//! MeshTimeout: its conf and its effect on Envoy resources.
