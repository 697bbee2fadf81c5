#!/usr/bin/env node
// Served by the lean node:http2 gRPC server of @berth/common (wire-compatible with grpc-js
// clients): the runtime's calls sit on every container start, and grpc-js's server costs
// ~0.5-0.75 ms of CPU per unary call here against ~0.2-0.4 ms (measured on this daemon:
// ~1 ms less daemon CPU per create+start+wait+delete).
import { runServiceH2 } from '@berth/common';
import { spec } from '../service';

void runServiceH2(spec);
