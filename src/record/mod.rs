//! Capture and writing: the kernel side of a capture (`capture`: hooks,
//! loading, transports, the loop) and the recording file format
//! (`format`: schema v1, the writer and rotated series, and the reader
//! that analysis uses). The two never import each other: the commands
//! (`cmd`) connect a capture's events to a format output.

#[cfg(feature = "capture")]
pub mod capture;
pub mod format;
