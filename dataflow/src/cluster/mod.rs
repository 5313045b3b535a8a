//! Multi-process clusters: the `workers.toml` layout, connecting the processes, noticing a lost
//! peer, and the local launcher.

mod connect;
pub mod launcher;
mod layout;
mod peer;

pub use connect::{connect, ConnectError, HandshakeError, Hello};
pub use layout::{Layout, ProcessAddr, Seat, WorkersArg, PROCESS_ENV};
pub use peer::{PeerLoss, PeerStream};

use timely::communication::allocator::zero_copy::initialize::{
    initialize_networking_from_sockets, CommsGuard,
};
use timely::communication::allocator::ProcessBuilder;
use timely::communication::{AllocatorBuilder, Hooks};

/// Timely allocators for this process's workers over already connected peer sockets, and the
/// guard of the network threads (kept by the caller: dropping it joins them).
pub fn allocators(
    sockets: Vec<Option<PeerStream>>,
    process: usize,
    threads: usize,
) -> std::io::Result<(Vec<AllocatorBuilder>, CommsGuard)> {
    let hooks = Hooks::default();
    let local =
        ProcessBuilder::new_typed_vector(threads, hooks.refill.clone(), hooks.spill.clone());
    let (builders, guard) =
        initialize_networking_from_sockets(local, sockets, process, threads, hooks)?;
    Ok((
        builders.into_iter().map(AllocatorBuilder::Tcp).collect(),
        guard,
    ))
}
