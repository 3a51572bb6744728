// The `crons` mode of the example (research.ts): a cron on the "linear" test graph every
// 2 s (a leading seconds field), listed with its next fire time; one fire and its run;
// then the cron deleted. It prints cron, listed, fire, ran, deleted and gone.
import { credentials, ServiceError, status } from "@grpc/grpc-js";
import { setTimeout as sleep } from "node:timers/promises";

import { crons, fromJson, runs, toJson } from "../src";

const FIRE_TIMEOUT_MS = 60_000;

/** Unary calls of @grpc/grpc-js take a callback; this makes one awaitable. */
function call<Res>(invoke: (callback: (error: Error | null, response: Res) => void) => unknown): Promise<Res> {
  return new Promise((resolve, reject) =>
    invoke((error, response) => (error ? reject(error) : resolve(response))),
  );
}

function nextFire(cron: crons.Cron): string {
  return cron.nextFireTimes[0]?.toISOString() ?? "none";
}

/** Poll the cron's fire records (one per due time) until one has started a run. */
async function firstRun(client: crons.CronServiceClient, cronId: string): Promise<crons.CronFire> {
  const deadline = Date.now() + FIRE_TIMEOUT_MS;
  while (Date.now() < deadline) {
    const request = crons.ListCronFiresRequest.fromPartial({ cronId });
    const listed = await call<crons.ListCronFiresResponse>((done) => client.listCronFires(request, done));
    const ran = listed.fires.find((fire) => fire.outcome === crons.CronFireOutcome.CRON_FIRE_OUTCOME_RAN);
    if (ran !== undefined) {
      return ran;
    }
    await sleep(200);
  }
  throw new Error(`cron ${cronId} did not start a run within ${FIRE_TIMEOUT_MS / 1000} s`);
}

export async function cronsExample(address: string, runClient: runs.RunServiceClient): Promise<void> {
  const client = new crons.CronServiceClient(address, credentials.createInsecure());
  try {
    const create = crons.CreateCronRequest.fromPartial({
      spec: {
        schedule: { $case: "cron", cron: "*/2 * * * * *" },
        graphId: "linear",
        inputJson: toJson({ x: 40 }),
        options: { metadataJson: toJson({ client: "typescript" }) },
      },
    });
    const cron = (await call<crons.CreateCronResponse>((done) => client.createCron(create, done))).cron!;
    console.log(`cron ${cron.cronId} ${nextFire(cron)}`);

    const list = crons.ListCronsRequest.fromPartial({ pageSize: 100 });
    const listed = await call<crons.ListCronsResponse>((done) => client.listCrons(list, done));
    for (const found of listed.crons.filter((each) => each.cronId === cron.cronId)) {
      console.log(`listed ${found.cronId} ${nextFire(found)}`);
    }

    const fire = await firstRun(client, cron.cronId);
    console.log(`fire ${cron.cronId} ${fire.runId} ${fire.dueAt!.toISOString()}`);
    const wait = runs.WaitRunRequest.fromPartial({ runId: fire.runId, timeoutSeconds: 60 });
    const run = (await call<runs.WaitRunResponse>((done) => runClient.waitRun(wait, done))).run!;
    const values = fromJson<{ x: number }>(run.valuesJson);
    console.log(`ran ${run.runId} ${runs.runStatusToJSON(run.status)} ${values?.x}`);

    await call<crons.DeleteCronResponse>((done) => client.deleteCron({ cronId: cron.cronId }, done));
    console.log(`deleted ${cron.cronId}`);
    try {
      await call<crons.GetCronResponse>((done) => client.getCron({ cronId: cron.cronId }, done));
      throw new Error(`cron ${cron.cronId} is still there after its deletion`);
    } catch (error) {
      if ((error as ServiceError).code !== status.NOT_FOUND) {
        throw error;
      }
    }
    console.log(`gone ${cron.cronId}`);
  } finally {
    client.close();
  }
}
