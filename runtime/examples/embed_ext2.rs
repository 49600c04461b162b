//! The README's embedding example: boot a kernel in this process, mount
//! an ext2 image, write a file, halt (flush, then quiesce).
//!
//!     mke2fs -t ext2 disk.img 64M && cargo run --example embed_ext2 -- disk.img

use netbsd_abi::reboot::RB_HALT;
use netbsd_abi::Syscalls;
use rumprun::Rump;

/// Mount `image` (an ext2 file system), write /hello.txt, halt; the
/// halt's report, as a line.
pub fn run(image: &str) -> Result<String, Box<dyn std::error::Error>> {
    let rump = Rump::builder()
        .drive(&format!("key=/dk,hostpath={image},size=host"))
        .boot()?;
    let p = rump.process()?;
    p.mkdir("/mnt", 0o755)?;
    p.mount_ext2("/mnt", 0, "/dk")?;
    p.write_file("/mnt/hello.txt", b"hello from a rump kernel\n")?;
    drop(p);
    // Flush everything to the image and mark it clean; the process stays.
    let report = rump.halt(RB_HALT)?;
    Ok(report.to_string())
}

#[allow(dead_code)]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let image = std::env::args().nth(1).unwrap_or_else(|| "disk.img".into());
    println!("{}", run(&image)?);
    Ok(())
}
