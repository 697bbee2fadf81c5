#!/usr/bin/env node
import { runService } from '@berth/common';
import { spec } from '../service';

void runService(spec);
