//! Inputs the fuzz targets (fuzz/, FUZZING.md) found that crashed, kept as tests.

use profile_image::api::UploadBuffer;

/// fuzz/upload_chunks: `UploadBuffer::new` reserved the declared size up front, so a
/// client declaring a huge size under a huge configured limit aborted the whole process
/// on the allocation ("requested allocation size 0xafafafafafafafa"). The buffer now
/// reserves at most one chunk; if this regresses it aborts the test binary, hence its
/// own file.
#[test]
fn a_huge_declared_size_under_a_huge_limit_allocates_nothing_up_front() {
    let declared = 0x0afa_fafa_fafa_fafa;
    let mut buffer = UploadBuffer::new(u64::MAX, declared).expect("within the limit");
    buffer.push(b"a few bytes").expect("a small chunk");
}
