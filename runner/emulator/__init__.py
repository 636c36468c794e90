"""A local Nova Sonic emulator: Bedrock's InvokeModelWithBidirectionalStream over HTTP/2 + TLS."""
