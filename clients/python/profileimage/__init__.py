"""Generated gRPC client code for the profile-image service (see ../generate.sh)."""
