import { ConfigError, loadConfig } from './config.js';
import { createWharf } from './server.js';

async function main(): Promise<void> {
  const config = loadConfig();
  const wharf = await createWharf(config, { logger: { level: config.logLevel } });
  if (wharf.generatedKey) {
    // Printed once: only its hash is stored.
    process.stdout.write(
      `\nNo API key existed, so one was created (admin, default account). It is shown only now:\n\n  ${wharf.generatedKey}\n\n`,
    );
  }
  await wharf.app.listen({ host: config.host, port: config.port });
  wharf.app.log.info(`Wharf is listening; public URL ${config.publicUrl}`);
  if (wharf.metricsUrl) wharf.app.log.info(`Metrics are served at ${wharf.metricsUrl}/metrics`);
  await wharf.core.uploads.sweep();

  const stop = async (signal: string) => {
    wharf.app.log.info(`${signal}: shutting down`);
    await wharf.close();
    process.exit(0);
  };
  process.once('SIGINT', () => void stop('SIGINT'));
  process.once('SIGTERM', () => void stop('SIGTERM'));
}

main().catch((err: unknown) => {
  process.stderr.write(
    `${err instanceof ConfigError ? err.message : String((err as Error)?.stack ?? err)}\n`,
  );
  process.exit(1);
});
