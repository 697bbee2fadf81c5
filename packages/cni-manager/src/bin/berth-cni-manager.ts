#!/usr/bin/env node
import { runServiceH2 } from '@berth/common';
import { spec } from '../service';

// The lean node:http2 gRPC server: SetUpPod is on every pod start's path (see h2-grpc-server.ts).
void runServiceH2(spec);
