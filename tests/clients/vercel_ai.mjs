// The Vercel AI SDK's default OpenAI provider (`openai(model)` calls /v1/responses) against the gateway.
// Run from tests/node (copied there by tests/clients/test_node_clients.py): prints one JSON line.
import { createOpenAI } from "@ai-sdk/openai";
import { generateText, stepCountIs, streamText, tool } from "ai";
import { z } from "zod";

const paths = new Set(); // which endpoints the default provider called
const openai = createOpenAI({
  apiKey: process.env.GW_KEY, baseURL: process.env.GW_BASE,
  fetch: (url, init) => { paths.add(new URL(String(url)).pathname); return fetch(url, init); },
});
const model = openai(process.env.GW_MODEL);
const tools = {
  get_weather: tool({
    description: "Weather in a city",
    inputSchema: z.object({ city: z.string() }),
    execute: async ({ city }) => `22 C in ${city}`,
  }),
};

const plain = await generateText({ model, prompt: "Hello!" });
const called = await generateText({ model, prompt: "Weather in Paris?", tools });

const streamed = streamText({ model, prompt: "Weather in Paris?", tools });
const parts = [];
for await (const part of streamed.fullStream) parts.push(part.type);
const streamedCalls = await streamed.toolCalls;
const streamedResults = await streamed.toolResults;

const text = streamText({ model, prompt: "Hello!" });
let streamedText = "";
for await (const delta of text.textStream) streamedText += delta;

// Two steps (call, then answer with the result): stateless, so the history is sent, not referenced.
const loop = await generateText({
  model, prompt: "Weather in Paris?", tools, stopWhen: stepCountIs(2),
  providerOptions: { openai: { store: false } },
});

console.log(JSON.stringify({
  plain: { text: plain.text, usage: plain.usage },
  called: { calls: called.toolCalls.map((c) => [c.toolName, c.input]), results: called.toolResults.map((r) => r.output) },
  streamed: { parts, calls: streamedCalls.map((c) => [c.toolName, c.input]), results: streamedResults.map((r) => r.output),
              usage: await streamed.usage },
  streamedText: { text: streamedText, usage: await text.usage },
  loop: { text: loop.text, steps: loop.steps.length },
  paths: [...paths],
}));
