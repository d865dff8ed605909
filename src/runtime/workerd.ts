/**
 * The Cloudflare Worker's entry (wrangler-container.jsonc's `main`): the Worker itself is
 * src/runtime/workerd/worker.ts, and TranscriberContainer the Durable Object class of its
 * containers.
 */
export { default } from './workerd/worker.ts';
export { TranscriberContainer } from './workerd/container.ts';
export { ContainerCoordinator } from './workerd/coordinator.ts';
