export * from '../brokers/redis/index.ts';
