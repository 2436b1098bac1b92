// Shared helpers of the end-to-end tests (see docs/operations.md, "Test and
// demo infrastructure"). Import from here:
//   import { startLlama, startGateway, cleanup } from './lib/index.mjs';
export * from './proc.mjs';
export * from './nginx.mjs';
export * from './llama.mjs';
export * from './fake-backend.mjs';
export * from './sse.mjs';
export * from './tap.mjs';
