//! ext2 (revision 0 and 1) on a vfs-cache store.
