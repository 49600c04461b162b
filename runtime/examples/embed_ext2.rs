//! The README's embedding example: boot a kernel in this process, mount
//! an ext2 image, write a file, halt (flush, then quiesce).
//!
//!     mke2fs -t ext2 disk.img 64M && cargo run --example embed_ext2 -- disk.img

use netbsd_abi::reboot::RB_HALT;
use rumprun::{Rump, Syscalls};

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

// Not called when built as its own test.
#[cfg_attr(test, allow(dead_code))]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let image = std::env::args().nth(1).unwrap_or_else(|| "disk.img".into());
    println!("{}", run(&image)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use testkit::server::{debugfs_cat, e2fsck_clean, mke2fs, tmpdir};

    /// The example, in this process: the file is in the image, which
    /// checks clean, and the report names its flags.
    #[test]
    fn the_example_writes_a_file_and_halts() {
        let d = tmpdir();
        let img = d.path().join("disk.img");
        mke2fs(&img, &[], "64M");
        let out = super::run(img.to_str().unwrap()).unwrap();
        assert!(out.starts_with("halt RB_HALT: flushed in "), "{out}");
        e2fsck_clean(&img);
        assert_eq!(
            debugfs_cat(&img, "/hello.txt"),
            b"hello from a rump kernel\n"
        );
    }
}
