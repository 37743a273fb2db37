import { Type } from 'typebox';

/** Lengths and characters are the core's to judge (INVALID_NAME, in this API's error shape). */
export const FileParams = Type.Object({
  namespace: Type.String({
    description: 'Letters, digits, `_`, `-`, `.` (e.g. `rewards`).',
    examples: ['rewards'],
  }),
  name: Type.String({ description: 'The file name with its extension.', examples: ['test.png'] }),
});
