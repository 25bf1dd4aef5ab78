#!/usr/bin/env node
// pinhole CLI entry: TypeScript sources run through tsx's loader (no build step).
import { register } from 'tsx/esm/api';
register();
const { main } = await import('../src/control/cli.ts');
process.exitCode = await main(process.argv.slice(2));
