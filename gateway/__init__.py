"""AvatarGateway server: gRPC API, drive pipeline, sessions, audio, errors, config."""
