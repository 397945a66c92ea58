"""The Open Inference Protocol's gRPC service definition and its generated stubs
(``grpc_predict_v2_pb2*``, made by `changeover.protos.generate`; do not edit them)."""
