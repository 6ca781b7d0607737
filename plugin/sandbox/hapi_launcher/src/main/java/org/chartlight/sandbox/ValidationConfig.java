package org.chartlight.sandbox;

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.context.support.IValidationSupport;
import ca.uhn.fhir.jpa.config.JpaConfig;
import ca.uhn.fhir.rest.server.interceptor.RequestValidatingInterceptor;
import ca.uhn.fhir.validation.IInstanceValidatorModule;
import ca.uhn.fhir.validation.ResultSeverityEnum;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.hl7.fhir.common.hapi.validation.support.PrePopulatedValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.ValidationSupportChain;
import org.hl7.fhir.r4.model.CodeSystem;
import org.springframework.beans.factory.annotation.Qualifier;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;

/**
 * Request validation: every FHIR body written to the server is checked against the R4 base
 * definitions, and one with an error-level issue is refused with 422 and an OperationOutcome.
 *
 * <p>It reuses HAPI's own validator and JPA validation-support chain (default profiles,
 * in-memory terminology, common code systems); building a second chain runs into bean cycles
 * (hapifhir/hapi-fhir#4995). Code systems the server does not know (LOINC, SNOMED, local ones)
 * give warnings only. Transactions and batches are validated entry by entry
 * ({@link TransactionEntryValidator}).
 */
@Configuration
public class ValidationConfig {

	/**
	 * Codes HL7 added to its code systems after the 2018 copies bundled with R4, which chartlight
	 * writes (AI labels from HL7 AI Transparency on FHIR). Without them the validator calls them
	 * unknown codes and refuses the resource.
	 */
	static final List<NewerCode> NEWER_CODES = List.of(
			new NewerCode("http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "AIAST",
					"artificial intelligence asserted"),
			new NewerCode("http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "DICTAST",
					"dictation asserted"),
			new NewerCode("http://terminology.hl7.org/CodeSystem/v3-ActCode", "PROCESSINLINELABEL",
					"process inline security label"));

	record NewerCode(String system, String code, String display) {}

	@Bean
	public RequestValidatingInterceptor requestValidatingInterceptor(
			FhirContext fhirContext,
			@Qualifier("myInstanceValidator") IInstanceValidatorModule instanceValidator,
			@Qualifier(JpaConfig.JPA_VALIDATION_SUPPORT_CHAIN) IValidationSupport chain,
			@Qualifier(JpaConfig.DEFAULT_PROFILE_VALIDATION_SUPPORT) IValidationSupport defaults) {
		// First in the chain, so the extended copies are what terminology checks look codes up in.
		((ValidationSupportChain) chain).addValidationSupport(0, newerCodes(fhirContext, defaults));

		RequestValidatingInterceptor interceptor = new RequestValidatingInterceptor();
		interceptor.setFailOnSeverity(ResultSeverityEnum.ERROR);
		interceptor.setValidatorModules(List.of(new TransactionEntryValidator(instanceValidator)));
		return interceptor;
	}

	/** Copies of the bundled code systems with NEWER_CODES added. */
	private static IValidationSupport newerCodes(FhirContext fhirContext, IValidationSupport defaults) {
		Map<String, CodeSystem> extended = new LinkedHashMap<>();
		for (NewerCode newer : NEWER_CODES) {
			extended.computeIfAbsent(
							newer.system(), system -> ((CodeSystem) defaults.fetchCodeSystem(system)).copy())
					.addConcept()
					.setCode(newer.code())
					.setDisplay(newer.display());
		}
		PrePopulatedValidationSupport support = new PrePopulatedValidationSupport(fhirContext);
		extended.values().forEach(support::addCodeSystem);
		return support;
	}
}
